"""taskd measured like the peers: ``taskd serve`` as the worker process, the Python client
as the submitter. The in-process numbers of ``bench.engine`` are the headline; this row
shows the daemon on exactly the peers' terms."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from typing import Any

import taskd
from bench.peers import Job
from bench.peers.config import URL
from bench.peers.recorder import RECORDER, now
from bench.procs import free_port


@taskd.task("bench.job")
async def job(ctx: taskd.Context, payload: dict[str, Any]) -> None:
    """The benchmark task."""
    started = now()
    if payload["sleep_ms"]:
        await asyncio.sleep(payload["sleep_ms"] / 1000)
    RECORDER.hit(payload["run"], payload["expected"], payload["sent"], started)


def _payload(item: Job) -> dict[str, Any]:
    run, expected, sent, sleep_ms = item
    return {"run": run, "expected": expected, "sent": sent, "sleep_ms": sleep_ms}


class TaskdPeer:
    """``Client.submit`` / ``submit_many`` and ``taskd serve --workers W``."""

    name = "taskd-serve"
    distribution = "taskd"
    setup = "`taskd serve --workers W` (prefetch W, uvloop), Client.submit / submit_many"
    batch_api = "Client.submit_many"
    e2e_cap: int | None = None
    io = True

    def __init__(self) -> None:
        self._client: taskd.Client | None = None
        self._data: str | None = None  # made on first use: the daemon imports this module too

    def worker_argv(self, concurrency: int) -> list[str]:
        """The daemon, with this module as its handlers."""
        if self._data is None:
            self._data = tempfile.mkdtemp(prefix="taskd-bench-serve-")
        return [
            sys.executable,
            "-m",
            "taskd",
            "serve",
            "--redis-url",
            URL,
            "--port",
            str(free_port()),
            "--workers",
            str(concurrency),
            "--handlers",
            "bench.peers.taskd",
            "--data-dir",
            self._data,
            "--log-level",
            "warning",
            "--log-format",
            "json",
        ]

    async def connect(self, url: str) -> None:
        """A connected client."""
        self._client = taskd.Client(url, handlers=["bench.peers.taskd"])
        await self._client.store()

    async def close(self) -> None:
        """Close the client and remove the daemon's data dir."""
        if self._client is not None:
            await self._client.close()
        if self._data is not None:
            shutil.rmtree(self._data, ignore_errors=True)

    async def submit(self, item: Job) -> None:
        """One ``Client.submit``."""
        assert self._client is not None
        await self._client.submit("bench.job", _payload(item))

    async def submit_batch(self, items: list[Job]) -> None:
        """One ``Client.submit_many``."""
        assert self._client is not None
        await self._client.submit_many(
            [{"task_type": "bench.job", "payload": _payload(i)} for i in items]
        )


PEER = TaskdPeer()
