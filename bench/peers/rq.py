"""RQ: one ``rq worker`` process that forks a child per job, as RQ's documentation has it.

Each job runs in a fresh child, so the tally cannot live in memory: the handler counts in
Redis on the job's own connection (one extra pipelined round trip per job).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from redis import Redis
from rq import Queue, get_current_job

from bench.peers import Job
from bench.peers.config import URL
from bench.peers.recorder import DONE_PREFIX, now

REDIS_URL = URL  # read by `rq worker -c bench.peers.rq`, which also preloads this module
QUEUES = ["bench"]


def job(run: str, expected: int, sent: float, sleep_ms: int) -> None:
    """The benchmark task."""
    started = now()
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    current = get_current_job()
    assert current is not None
    redis: Any = current.connection  # sync client; its stubs also allow async replies
    pipe = redis.pipeline(transaction=False)
    pipe.incr(f"bench:count:{run}")
    pipe.set(f"bench:first:{run}", started, nx=True)
    if sent:
        pipe.rpush(f"bench:lags:{run}", started - sent)
    count = pipe.execute()[0]
    if count == expected:
        first = float(redis.get(f"bench:first:{run}") or started)
        lags = [float(x) for x in redis.lrange(f"bench:lags:{run}", 0, -1)]
        record = {"count": count, "first": first, "last": now(), "lags": lags}
        redis.set(DONE_PREFIX + run, json.dumps(record), ex=3600)


class RqPeer:
    """``Queue.enqueue`` / ``Queue.enqueue_many`` to submit, ``rq worker`` to run."""

    name = "rq"
    distribution = "rq"
    setup = (
        "`rq worker -c bench.peers.rq` (forks per job, module preloaded), "
        "1 job at a time; counted in Redis (+1 round trip/job)"
    )
    batch_api = "Queue.enqueue_many in one pipeline"
    e2e_cap: int | None = 1500  # ~100 tasks/s: keeps the full run under 5 minutes
    io = False  # one job at a time per process: 10 ms tasks would take minutes

    def __init__(self) -> None:
        self._queue: Queue | None = None

    def worker_argv(self, concurrency: int) -> list[str]:
        """One forking worker process (its concurrency is always 1)."""
        return [sys.executable, "-m", "rq.cli", "worker", "-c", "bench.peers.rq", "-q"]

    async def connect(self, url: str) -> None:
        """A queue on its own connection."""
        self._queue = Queue("bench", connection=Redis.from_url(url))

    async def close(self) -> None:
        """Close the connection."""
        if self._queue is not None:
            self._queue.connection.close()

    async def submit(self, item: Job) -> None:
        """One ``enqueue``."""
        assert self._queue is not None
        self._queue.enqueue(job, *item)

    async def submit_batch(self, items: list[Job]) -> None:
        """``enqueue_many`` with a pipeline, as RQ's docs show for bulk jobs."""
        queue = self._queue
        assert queue is not None
        with queue.connection.pipeline() as pipe:
            queue.enqueue_many([Queue.prepare_data(job, args=i) for i in items], pipeline=pipe)
            pipe.execute()


PEER = RqPeer()
