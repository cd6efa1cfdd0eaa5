"""arq: asyncio, one worker process polling a zset; no bulk enqueue."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import func, run_worker

from bench.peers import Job
from bench.peers.config import CONCURRENCY, URL
from bench.peers.recorder import RECORDER, now


async def job(ctx: dict[str, Any], run: str, expected: int, sent: float, sleep_ms: int) -> None:
    """The benchmark task."""
    started = now()
    if sleep_ms:
        await asyncio.sleep(sleep_ms / 1000)
    RECORDER.hit(run, expected, sent, started)


class WorkerSettings:
    """arq's worker settings. The default poll_delay (0.5 s) sleeps between polls even under
    load and makes an idle worker answer in ~250 ms; 10 ms is arq's knob for latency."""

    functions = [func(job, name="job")]  # noqa: RUF012 - arq reads class attributes
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = CONCURRENCY
    poll_delay = 0.01


class ArqPeer:
    """arq as its README shows it: ``create_pool`` + ``enqueue_job``, a ``Worker``."""

    name = "arq"
    distribution = "arq"
    setup = "1 worker process (run_worker), max_jobs=W, poll_delay=10 ms, results kept 1 h"
    batch_api: str | None = None  # no bulk API: e2e submits one by one
    e2e_cap: int | None = None
    io = True

    def __init__(self) -> None:
        self._pool: ArqRedis | None = None

    def worker_argv(self, concurrency: int) -> list[str]:
        """run_worker rather than the CLI, which logs every job at INFO."""
        return [sys.executable, "-c", "from bench.peers.arq import serve; serve()"]

    async def connect(self, url: str) -> None:
        """A pool for enqueueing."""
        self._pool = await create_pool(RedisSettings.from_dsn(url))

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.aclose()

    async def submit(self, job: Job) -> None:
        """One ``enqueue_job``."""
        assert self._pool is not None
        await self._pool.enqueue_job("job", *job)

    async def submit_batch(self, jobs: list[Job]) -> None:
        """Concurrent ``enqueue_job`` calls."""
        await asyncio.gather(*(self.submit(j) for j in jobs))


def serve() -> None:
    """The worker process."""
    run_worker(WorkerSettings)  # type: ignore[arg-type]


PEER = ArqPeer()
