"""huey with RedisHuey (blocking reads): one consumer process with W threads."""

from __future__ import annotations

import sys
import time

from huey import RedisHuey

from bench.peers import Job
from bench.peers.config import URL
from bench.peers.recorder import RECORDER, now

huey = RedisHuey("bench", url=URL)


@huey.task()  # type: ignore[untyped-decorator]  # huey ships no type hints
def job(run: str, expected: int, sent: float, sleep_ms: int) -> None:
    """The benchmark task (returns None, which huey does not store)."""
    started = now()
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    RECORDER.hit(run, expected, sent, started)


class HueyPeer:
    """Calling the task enqueues it; ``huey_consumer -k thread -w W`` runs it."""

    name = "huey"
    distribution = "huey"
    setup = "RedisHuey (blocking BRPOP); `huey_consumer -k thread -w W`"
    batch_api = None
    e2e_cap: int | None = None
    io = True

    def worker_argv(self, concurrency: int) -> list[str]:
        """One consumer process with W worker threads."""
        return [
            sys.executable,
            "-m",
            "huey.bin.huey_consumer",
            "bench.peers.huey.huey",
            "-k",
            "thread",
            "-w",
            str(concurrency),
            "-q",
        ]

    async def connect(self, url: str) -> None:
        """The huey instance is the module's."""

    async def close(self) -> None:
        """Nothing to release."""

    async def submit(self, item: Job) -> None:
        """One call of the task."""
        job(*item)

    async def submit_batch(self, items: list[Job]) -> None:
        """huey has no bulk enqueue."""
        for item in items:
            job(*item)


PEER = HueyPeer()
