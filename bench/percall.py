"""Per-call workloads (issue 16): one submit per call, as web handlers and scripts make them.

``python -m bench`` measures ``Client.submit`` one by one in ``bench.engine.enqueue``; this
module adds the blocking client in the same loop, many coroutines submitting at once, and
the floor under both: a bare PING round trip through the same clients.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from bench.engine import SUBMITTED, bench_client
from bench.server import cpu_seconds, flush
from bench.stats import rate
from taskd.engine.registry import Registry, TaskType
from taskd.sync_client import SyncClient

CALLERS = 100


async def _noop(ctx: Any, payload: dict[str, Any]) -> None:
    """Never runs: no pool consumes these workloads."""


def sync_bench_client(url: str) -> SyncClient:
    """A blocking client that knows the benchmark's task types."""
    return SyncClient(url, registry=Registry(TaskType(name, _noop) for name in SUBMITTED))


async def enqueue_sync(url: str, n: int) -> dict[str, float]:
    """Tasks/s of ``SyncClient.submit`` one by one in one thread, no worker running; and a
    blocking PING through redis-py in the same thread (the floor of one round trip)."""
    await flush(url)

    def run() -> dict[str, float]:
        with sync_bench_client(url) as client:
            client.submit("bench.noop")  # connections and scripts are not measured
            started = time.perf_counter()
            for _ in range(n):
                client.submit("bench.noop")
            submit_s = time.perf_counter() - started
        ping = redis.Redis.from_url(url)
        ping.ping()
        started = time.perf_counter()
        for _ in range(n):
            ping.ping()
        ping_s = time.perf_counter() - started
        ping.close()
        return {"per_s": rate(n, submit_s), "ping_per_s": rate(n, ping_s)}

    found = await asyncio.to_thread(run)
    await flush(url)
    return found


async def ping_async(url: str, n: int) -> float:
    """PINGs/s one by one through the async client's own connection pool (the floor
    under ``Client.submit``)."""
    async with bench_client(url) as client:
        store = await client.store()
        await store.redis.ping()
        started = time.perf_counter()
        for _ in range(n):
            await store.redis.ping()
        return rate(n, time.perf_counter() - started)


async def enqueue_concurrent(url: str, n: int, callers: int = CALLERS) -> dict[str, float]:
    """Tasks/s when ``callers`` coroutines each call ``Client.submit`` in a loop (a web app
    under load), and Redis's CPU per task meanwhile."""
    await flush(url)
    async with bench_client(url) as client:
        await client.submit("bench.noop")
        each = max(1, n // callers)

        async def caller() -> None:
            for _ in range(each):
                await client.submit("bench.noop")

        cpu = await cpu_seconds(url)
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.perf_counter() - started
        cpu = await cpu_seconds(url) - cpu
    await flush(url)
    total = each * callers
    return {"per_s": rate(total, elapsed), "redis_cpu_us_per_task": round(cpu / total * 1e6, 1)}
