"""The peer workloads, run in the peer's own interpreter against a worker subprocess.

The submitter is this process; the worker is the library's own worker command. Every
handler calls the shared Recorder, so tasks/s and submit -> start delays are measured the
same way for every library: first submit to the last task handled, on CLOCK_MONOTONIC.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.peers import Job, Peer
from bench.peers.recorder import DONE_PREFIX, now
from bench.procs import Child, child_env
from bench.stats import latency_ms, rate

CHUNK = 500  # tasks per submit_batch call in e2e and io


@dataclass(frozen=True, slots=True)
class PeerPlan:
    """Workload sizes (the orchestrator derives them from --tasks)."""

    tasks: int
    single_tasks: int
    batch_tasks: int
    latency_tasks: int
    io_tasks: int
    workers: int = 8
    io_workers: int = 100
    io_sleep_ms: int = 10
    spacing_s: float = 0.005  # issue 16: enqueue -> start with tasks 5 ms apart


class Harness:
    """One peer, one Redis, one log folder."""

    def __init__(self, peer: Peer, url: str, plan: PeerPlan, log_dir: Path) -> None:
        self.peer = peer
        self.url = url
        self.plan = plan
        self.log_dir = log_dir
        self.redis = aioredis.Redis.from_url(url)

    async def run(self) -> dict[str, Any]:
        """Every workload once (the orchestrator repeats whole rounds and takes medians)."""
        peer, plan = self.peer, self.plan
        result: dict[str, Any] = {
            "version": metadata.version(peer.distribution),
            "setup": peer.setup,
            "batch_api": peer.batch_api,
        }
        await self.redis.flushdb()
        await peer.connect(self.url)
        try:
            result["enqueue_per_s"] = await self.enqueue(plan.single_tasks, batch=False)
            n = min(plan.tasks, peer.e2e_cap or plan.tasks)  # caps batch enqueue too
            if peer.batch_api:
                result["enqueue_batch_per_s"] = await self.enqueue(n, batch=True)
            async with self.worker(plan.workers):
                result |= {"e2e_per_s": await self.e2e(n), "e2e_tasks": n}
                one_by_one = min(plan.single_tasks, peer.e2e_cap or plan.single_tasks)
                result["e2e_percall_per_s"] = await self.e2e(one_by_one, per_call=True)
                result |= {f"latency_{k}": v for k, v in (await self.latency()).items()}
            if peer.io:
                async with self.worker(plan.io_workers):
                    result["io_per_s"] = await self.e2e(plan.io_tasks, plan.io_sleep_ms)
        finally:
            await peer.close()
            await self.redis.flushdb()
            await self.redis.aclose()
        return result

    async def enqueue(self, n: int, *, batch: bool) -> float:
        """Tasks/s submitted with no worker running (one by one, or in batches)."""
        await self.redis.flushdb()
        jobs: list[Job] = [("enqueue", n, 0.0, 0)] * n
        await self.peer.submit(jobs[0])  # connection set-up is not measured
        started = now()
        if batch:
            for i in range(0, n, 1000):
                await self.peer.submit_batch(jobs[i : i + 1000])
        else:
            for job in jobs:
                await self.peer.submit(job)
        ended = now()
        await self.redis.flushdb()
        return rate(n, ended - started)

    async def e2e(self, n: int, sleep_ms: int = 0, *, per_call: bool = False) -> float:
        """Tasks/s from the first submit to the last task handled; ``per_call``: one
        enqueue call per task (the live, one-enqueuer case of issue 16), else batches
        where the library has them."""
        run = uuid.uuid4().hex
        jobs = [(run, n, 0.0, sleep_ms)] * n
        started = now()
        for i in range(0, n, CHUNK):
            chunk = jobs[i : i + CHUNK]
            if self.peer.batch_api and not per_call:
                await self.peer.submit_batch(chunk)
            else:
                for job in chunk:
                    await self.peer.submit(job)
        record = await self.wait_done(run, timeout_s=max(60.0, n / 50))
        return rate(n, record["last"] - started)

    async def latency(self) -> dict[str, float]:
        """Submit -> handler start on an idle worker, tasks ``spacing_s`` apart."""
        await asyncio.sleep(0.5)  # idle: nothing left of the e2e runs
        n, run = self.plan.latency_tasks, uuid.uuid4().hex
        first = now()
        for i in range(n):
            delay = first + i * self.plan.spacing_s - now()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.peer.submit((run, n, now(), 0))
        record = await self.wait_done(run, timeout_s=120)
        return latency_ms(record["lags"])

    async def wait_done(self, run: str, timeout_s: float) -> dict[str, Any]:
        """The Recorder's report of a run, polled every 5 ms."""
        deadline = now() + timeout_s
        while (raw := await self.redis.get(DONE_PREFIX + run)) is None:
            if now() > deadline:
                raise TimeoutError(f"run {run} did not finish within {timeout_s:.0f}s")
            await asyncio.sleep(0.005)
        record: dict[str, Any] = json.loads(raw)
        return record

    @asynccontextmanager
    async def worker(self, concurrency: int) -> AsyncIterator[Child]:
        """The peer's worker process, started on an empty database and proven to consume."""
        await self.redis.flushdb()
        log = self.log_dir / f"{self.peer.name}-worker-{concurrency}.log"
        env = child_env(BENCH_REDIS_URL=self.url, BENCH_CONCURRENCY=str(concurrency))
        child = Child(self.peer.worker_argv(concurrency), log, env)
        try:
            await self._until_consuming(child)
            yield child
        finally:
            await child.stop()
            await self.redis.flushdb()

    async def _until_consuming(self, child: Child, timeout_s: float = 60.0) -> None:
        """Send a ping task every half second until one is handled (streams read from '$'
        lose tasks sent before the worker's group exists, so one ping is not enough)."""
        run = f"ready-{uuid.uuid4().hex}"
        deadline = now() + timeout_s
        while now() < deadline:
            if not child.alive():
                raise RuntimeError(f"worker exited:\n{child.log_tail()}")
            await self.peer.submit((run, 1, 0.0, 0))
            for _ in range(50):
                if await self.redis.exists(DONE_PREFIX + run):
                    return
                await asyncio.sleep(0.01)
        raise TimeoutError(f"worker not consuming after {timeout_s:.0f}s:\n{child.log_tail()}")


def log_dir() -> Path:
    """A folder for worker logs that outlives the run (for post-mortems)."""
    return Path(tempfile.mkdtemp(prefix="taskd-bench-peer-"))
