"""Fault 8, memory: a long steady run; daemon RSS and Redis memory must level off."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskd.embedded import EmbeddedRedis
from taskd.engine.supervisor import EXPIRE_BATCH, Supervisor, SupervisorConfig
from taskd.store import Store
from tests.chaos.harness import (
    SIZES,
    Cluster,
    report,
    rss_kib,
    specs,
    submit,
)
from tests.conftest import eventually
from tests.enginetools import take

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SIZES.timeout_s)]
RETENTION_S = 2.0
BACKLOG = 2000  # tasks waiting at most; the feeder tops up to this
BATCH = 250
RATE = 2000  # tasks/s at most, so that the short form runs long enough to level off
SAMPLES = 20  # points of each reported curve


@pytest.fixture
async def memory_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test alone, so its memory is this run's alone."""
    server = EmbeddedRedis(tmp_path / "redis", unix_socket=False, appendonly=False)
    await server.start()
    yield server
    await server.stop()


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement during the run."""

    done: int
    redis_kib: int
    rss_kib: tuple[int, ...]


def growth(curve: list[float]) -> tuple[float, float]:
    """(absolute, relative) growth from the middle of the run to its end (medians of the
    second and fourth quarter, so single spikes do not count)."""
    n = len(curve)
    middle = statistics.median(curve[n // 4 : n // 2])
    end = statistics.median(curve[3 * n // 4 :])
    return end - middle, (end - middle) / middle if middle else 0.0


def thin(values: list[int]) -> list[int]:
    """At most SAMPLES evenly spaced points of a curve, for the report."""
    step = max(1, len(values) // SAMPLES)
    return values[::step]


class Sampler:
    """Measures Redis memory and the daemons' RSS every ``interval_s`` until stopped."""

    def __init__(self, store: Store, queue: str, pids: tuple[int, ...]) -> None:
        self.store, self.queue, self.pids = store, queue, pids
        self.samples: list[Sample] = []
        self.stop = asyncio.Event()

    async def run(self, interval_s: float = 0.25) -> None:
        while not self.stop.is_set():
            stats = await self.store.stats(self.queue)
            info = await self.store.redis.info("memory")
            rss = tuple(rss_kib(p) for p in self.pids)
            self.samples.append(Sample(stats["completed_total"], info["used_memory"] // 1024, rss))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), interval_s)  # measurement pacing


async def _done(store: Store, queue: str, target: int) -> bool:
    stats = await store.stats(queue)
    return bool(stats["completed_total"] + stats["failed_total"] >= target)


async def test_memory_levels_off_over_a_long_run(
    memory_redis: EmbeddedRedis, queue: str, tmp_path: Path
) -> None:
    """Daemon RSS and Redis memory stop growing once retention starts expiring tasks."""
    store = await Store.connect(memory_redis.url)
    # Housekeeping (retention) runs every 10 sweeps: every second here.
    config = {"tasks": {"lease_s": 5, "sweep_interval_s": 0.1, "retention_s": RETENTION_S}}
    cluster = Cluster(tmp_path, memory_redis.url, queue, workers=8, config=config)
    total = SIZES.memory_tasks
    try:
        daemons = await cluster.start(2)
        pids = tuple(d.proc.pid for d in daemons)
        sampler = Sampler(store, queue, pids)
        sampling = asyncio.create_task(sampler.run())
        started = time.monotonic()
        submitted = 0
        while submitted < total:
            # Load pacing (RATE), not synchronisation.
            await asyncio.sleep(max(0.0, started + submitted / RATE - time.monotonic()))
            # Keep a bounded backlog: top up when fewer than BACKLOG tasks wait.
            target = submitted - BACKLOG
            await eventually(lambda t=target: _done(store, queue, t), 60, 0.02)
            size = min(BATCH, total - submitted)
            await submit(store, specs("work", [{"ms": 0}] * size, queue))
            submitted += size
        await eventually(lambda: _done(store, queue, total), timeout_s=120)
        elapsed = time.monotonic() - started
        sampler.stop.set()
        await sampling
        keys_end = await store.redis.dbsize()
        events_len = await store.redis.xlen(store.keys(queue).events)
        assert all(d.proc.poll() is None for d in daemons)
    finally:
        cluster.close()
        await store.close()

    samples = sampler.samples
    redis_curve = [s.redis_kib for s in samples]
    rss_curves = [[s.rss_kib[i] for s in samples] for i in range(len(pids))]
    redis_growth = growth([float(v) for v in redis_curve])
    rss_growth = [growth([float(v) for v in c]) for c in rss_curves]
    report(
        "memory",
        tasks=total,
        elapsed_s=round(elapsed, 1),
        tasks_per_s=round(total / elapsed),
        samples=len(samples),
        done_at_sample=thin([s.done for s in samples]),
        redis_used_kib=thin(redis_curve),
        daemon_rss_kib=[thin(c) for c in rss_curves],
        redis_growth_2nd_half_kib=round(redis_growth[0]),
        rss_growth_2nd_half_kib=[round(g[0]) for g in rss_growth],
        redis_keys_at_end=keys_end,
        events_stream_len=events_len,
    )
    assert redis_growth[0] < 4096 or redis_growth[1] < 0.15, redis_growth
    for absolute, relative in rss_growth:
        assert absolute < 8192 or relative < 0.10, rss_growth


async def test_one_housekeeping_pass_expires_more_than_one_batch(store: Store, queue: str) -> None:
    """A pass expires every finished task past retention, not just one batch of them."""
    count = EXPIRE_BATCH * 2 + 500
    tasks = await submit(store, specs("work", [{"ms": 0}] * count, queue))
    started = await take(store, queue, "chaos:0:0", count)
    assert len(started) == count
    assert set(await store.complete_many([(t, b"null") for t in started])) == {"completed"}
    supervisor = Supervisor(store, "chaos:0:0", SupervisorConfig(retention_s=0.001))
    # Retention is 1 ms of Redis time: a pass within that millisecond finds nothing yet.
    first = await eventually(lambda: supervisor.expire(queue))
    assert first == count
    assert await store.get_many([(queue, t.id) for t in tasks]) == [None] * count
    assert (await store.stats(queue))["total"] == 0
