"""SAQ: asyncio, one worker process dequeuing with BLMOVE; no bulk enqueue."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from saq import Queue

from bench.peers import Job
from bench.peers.config import CONCURRENCY, URL
from bench.peers.recorder import RECORDER, now


async def job(ctx: dict[str, Any], *, run: str, expected: int, sent: float, sleep_ms: int) -> None:
    """The benchmark task."""
    started = now()
    if sleep_ms:
        await asyncio.sleep(sleep_ms / 1000)
    RECORDER.hit(run, expected, sent, started)


settings = {"queue": Queue.from_url(URL), "functions": [job], "concurrency": CONCURRENCY}


class SaqPeer:
    """SAQ as its README shows it: ``Queue.enqueue`` and the ``saq`` worker command."""

    name = "saq"
    distribution = "saq"
    setup = "`saq bench.peers.saq.settings --workers 1`, concurrency=W, job state kept (ttl)"
    batch_api: str | None = None  # no bulk API: e2e submits one by one
    e2e_cap: int | None = None
    io = True

    def __init__(self) -> None:
        self._queue: Queue | None = None

    def worker_argv(self, concurrency: int) -> list[str]:
        """The saq CLI, one worker process."""
        return [sys.executable, "-m", "saq", "bench.peers.saq.settings", "--workers", "1"]

    async def connect(self, url: str) -> None:
        """A queue client."""
        self._queue = Queue.from_url(url)
        await self._queue.connect()

    async def close(self) -> None:
        """Disconnect."""
        if self._queue is not None:
            await self._queue.disconnect()

    async def submit(self, job: Job) -> None:
        """One ``enqueue``."""
        assert self._queue is not None
        run, expected, sent, sleep_ms = job
        await self._queue.enqueue("job", run=run, expected=expected, sent=sent, sleep_ms=sleep_ms)

    async def submit_batch(self, jobs: list[Job]) -> None:
        """Concurrent ``enqueue`` calls."""
        await asyncio.gather(*(self.submit(j) for j in jobs))


PEER = SaqPeer()
