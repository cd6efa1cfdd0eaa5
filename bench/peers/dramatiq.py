"""Dramatiq with its RedisBroker: one worker process with W threads."""

from __future__ import annotations

import sys
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers import Job
from bench.peers.config import URL
from bench.peers.recorder import RECORDER, now

broker = RedisBroker(url=URL)  # type: ignore[no-untyped-call]  # partly typed library
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="job", queue_name="bench")
def job(run: str, expected: int, sent: float, sleep_ms: int) -> None:
    """The benchmark task."""
    started = now()
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    RECORDER.hit(run, expected, sent, started)


class DramatiqPeer:
    """``actor.send()`` to submit, ``dramatiq`` to run (default middleware)."""

    name = "dramatiq"
    distribution = "dramatiq"
    setup = "RedisBroker, default middleware; `dramatiq --processes 1 --threads W`"
    batch_api = "dramatiq.group(...).run()"
    e2e_cap: int | None = None
    io = True

    def worker_argv(self, concurrency: int) -> list[str]:
        """One worker process (forked from dramatiq's parent) with W threads."""
        return [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.peers.dramatiq",
            "--processes",
            "1",
            "--threads",
            str(concurrency),
        ]

    async def connect(self, url: str) -> None:
        """The broker is the module's."""

    async def close(self) -> None:
        """Close the broker's connections."""
        broker.close()

    async def submit(self, item: Job) -> None:
        """One ``send``."""
        job.send(*item)

    async def submit_batch(self, items: list[Job]) -> None:
        """A group of messages."""
        messages = [job.message(*i) for i in items]
        dramatiq.group(messages).run()  # type: ignore[no-untyped-call]


PEER = DramatiqPeer()
