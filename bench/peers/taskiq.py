"""taskiq with taskiq-redis's RedisStreamBroker (the acknowledging one, as in its README)."""

from __future__ import annotations

import asyncio
import sys

from taskiq_redis import RedisStreamBroker

from bench.peers import Job
from bench.peers.config import URL
from bench.peers.recorder import RECORDER, now

broker = RedisStreamBroker(URL)


@broker.task(task_name="job")
async def job(run: str, expected: int, sent: float, sleep_ms: int) -> None:
    """The benchmark task."""
    started = now()
    if sleep_ms:
        await asyncio.sleep(sleep_ms / 1000)
    RECORDER.hit(run, expected, sent, started)


class TaskiqPeer:
    """``task.kiq()`` to submit, ``taskiq worker`` to run; no result backend."""

    name = "taskiq"
    distribution = "taskiq"
    setup = (
        "RedisStreamBroker (acks), no result backend; `taskiq worker --workers 1 "
        "--max-async-tasks W --max-prefetch W`"
    )
    batch_api: str | None = None  # no bulk API: e2e submits one by one
    e2e_cap: int | None = None
    io = True

    def worker_argv(self, concurrency: int) -> list[str]:
        """One worker process (plus taskiq's supervising parent)."""
        return [
            sys.executable,
            "-m",
            "taskiq",
            "worker",
            "bench.peers.taskiq:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(concurrency),
            "--max-prefetch",
            str(concurrency),
            "--log-level",
            "WARNING",
        ]

    async def connect(self, url: str) -> None:
        """Start the broker's client side."""
        await broker.startup()

    async def close(self) -> None:
        """Stop it."""
        await broker.shutdown()

    async def submit(self, item: Job) -> None:
        """One ``kiq``."""
        await job.kiq(*item)

    async def submit_batch(self, items: list[Job]) -> None:
        """Concurrent ``kiq`` calls."""
        await asyncio.gather(*(self.submit(i) for i in items))


PEER = TaskiqPeer()
