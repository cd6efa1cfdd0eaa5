"""Celery with the Redis broker: one worker process, thread pool of W, results ignored."""

from __future__ import annotations

import sys
import time

from celery import Celery, group

from bench.peers import Job
from bench.peers.config import URL
from bench.peers.recorder import RECORDER, now

app = Celery("bench", broker=URL)
app.conf.update(
    task_ignore_result=True,  # "Optimizing": don't store results nobody reads
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="job")  # type: ignore[untyped-decorator]  # celery ships no type hints
def job(run: str, expected: int, sent: float, sleep_ms: int) -> None:
    """The benchmark task."""
    started = now()
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    RECORDER.hit(run, expected, sent, started)


class CeleryPeer:
    """``task.delay()`` to submit, ``celery worker`` to run."""

    name = "celery"
    distribution = "celery"
    setup = (
        "`celery worker -P threads -c W --without-gossip --without-mingle "
        "--without-heartbeat`, task_ignore_result, prefetch multiplier 4 (default)"
    )
    batch_api = "celery.group(...).apply_async()"
    e2e_cap: int | None = 5000  # ~1,000 tasks/s: keeps the full run under 5 minutes
    io = True

    def worker_argv(self, concurrency: int) -> list[str]:
        """One worker process with a pool of W threads."""
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.peers.celery",
            "worker",
            "-P",
            "threads",
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ]

    async def connect(self, url: str) -> None:
        """The app is the module's."""

    async def close(self) -> None:
        """Release the broker connection pool."""
        app.close()

    async def submit(self, item: Job) -> None:
        """One ``delay``."""
        job.delay(*item)

    async def submit_batch(self, items: list[Job]) -> None:
        """A group of signatures."""
        group(job.s(*i) for i in items).apply_async()


PEER = CeleryPeer()
