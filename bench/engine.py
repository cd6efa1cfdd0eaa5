"""taskd's workloads on one in-process pool: the engine measured without HTTP in between.

The pool and supervisor are built exactly as ``taskd serve --workers W`` builds them (the
daemon's own ``_pool_config``), on one event loop together with the submitting client, and
handler starts are timed with ``perf_counter`` in the submitter's process.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from bench.server import cpu_seconds, flush, used_memory
from bench.stats import latency_ms, rate
from taskd import canvas, config
from taskd.client import Client
from taskd.daemon.heap import freeze_startup_heap
from taskd.daemon.root import Daemon
from taskd.engine.pool import WorkerPool, consumer_name
from taskd.engine.registry import Registry, TaskType
from taskd.engine.supervisor import Supervisor
from taskd.store import Store

SUBMIT_BATCH = 500
_consumers = itertools.count(1)


async def noop(ctx: Any, payload: dict[str, Any]) -> None:
    """The no-op handler."""


NOOP = TaskType("bench.noop", noop)
# Every type the workloads submit: clients validate types as the API does.
SUBMITTED = ("bench.noop", "bench.sleep", "bench.probe", "bench.io", "bench.low", "bench.high")


def bench_client(url: str) -> Client:
    """A client that knows the benchmark's task types."""
    return Client(url, registry=Registry(TaskType(name, noop) for name in SUBMITTED))


@dataclass
class Probe:
    """A handler that notes when each task (by payload index) started, then optionally sleeps."""

    name: str
    sleep_s: float = 0.0
    started: dict[int, float] = field(default_factory=dict)

    async def handle(self, ctx: Any, payload: dict[str, Any]) -> None:
        """Record the start first, so the sleep never counts as latency."""
        self.started[int(payload["i"])] = time.perf_counter()
        if self.sleep_s:
            await asyncio.sleep(self.sleep_s)

    @property
    def task_type(self) -> TaskType:
        """This probe as a registered task type."""
        return TaskType(self.name, self.handle)


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll an in-process condition every millisecond; return the perf_counter it held at."""
    deadline = time.perf_counter() + timeout_s
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s:.0f}s")
        await asyncio.sleep(0.001)
    return time.perf_counter()


@asynccontextmanager
async def running_pool(
    url: str, workers: int, types: Sequence[TaskType]
) -> AsyncIterator[WorkerPool]:
    """A pool + supervisor configured like ``taskd serve --workers W``, stopped on exit."""
    settings = config.load(None, {}, {"workers.count": workers})
    registry = Registry(types)
    daemon = Daemon(settings, registry)  # only for its config builders: the same tuning
    store = await Store.connect(url)
    consumer = consumer_name(next(_consumers))
    pool = WorkerPool(store, registry, consumer, daemon._pool_config(), settings)
    supervisor = Supervisor(store, consumer, daemon._supervisor_config())
    stop = asyncio.Event()
    jobs = [asyncio.create_task(pool.run(stop)), asyncio.create_task(supervisor.run(stop))]
    try:
        async with asyncio.timeout(10):
            await pool.started.wait()
        freeze_startup_heap()  # as `taskd serve` does once started
        yield pool
    finally:
        stop.set()
        await asyncio.gather(*jobs)
        await store.close()


async def submit_all(client: Client, n: int, item: dict[str, Any]) -> None:
    """Submit ``n`` copies of ``item`` in batches (``Client.submit_many``)."""
    for start in range(0, n, SUBMIT_BATCH):
        await client.submit_many([item] * min(SUBMIT_BATCH, n - start))


async def warm_up(client: Client, pool: WorkerPool, n: int = 50) -> None:
    """Run a few tasks first: connections, script loading and imports are not measured."""
    done = asyncio.create_task(completions(pool, n, "warm-up", 30))
    await client.submit_many([{"task_type": "bench.noop"}] * n)
    await done


def completions(
    pool: WorkerPool, n: int, what: str, timeout_s: float = 300
) -> Coroutine[Any, Any, float]:
    """Wait for ``n`` more completions than the pool has at this call (not at the first
    await); the perf_counter of the last."""
    base = pool.completed
    return until(lambda: pool.completed - base >= n, timeout_s, what)


async def e2e(url: str, n: int, workers: int) -> dict[str, float]:
    """No-op tasks/s from the first submit to the last completion, submitter on the same loop,
    and the Redis server's CPU time per task meanwhile (what bounds a faster engine)."""
    await flush(url)
    async with running_pool(url, workers, [NOOP]) as pool, bench_client(url) as client:
        await warm_up(client, pool)
        done = asyncio.create_task(completions(pool, n, "e2e completions"))
        redis_cpu = await cpu_seconds(url)
        started = time.perf_counter()
        await submit_all(client, n, {"task_type": "bench.noop"})
        ended = await done
        redis_cpu = await cpu_seconds(url) - redis_cpu
    per_task_us = round(redis_cpu / n * 1e6, 1)
    return {"per_s": rate(n, ended - started), "redis_cpu_us_per_task": per_task_us}


async def enqueue(url: str, n: int, *, batch: bool) -> dict[str, float]:
    """Tasks/s submitted with no pool running: ``Client.submit`` one by one, or
    ``submit_many`` with 1,000 tasks per call; and Redis's CPU time per task meanwhile."""
    await flush(url)
    item = {"task_type": "bench.noop"}
    async with bench_client(url) as client:
        await client.submit_many([item])  # connection and script loading are not measured
        redis_cpu = await cpu_seconds(url)
        started = time.perf_counter()
        if batch:
            for start in range(0, n, 1000):
                await client.submit_many([item] * min(1000, n - start))
        else:
            for _ in range(n):
                await client.submit("bench.noop")
        ended = time.perf_counter()
        redis_cpu = await cpu_seconds(url) - redis_cpu
    await flush(url)
    return {
        "per_s": rate(n, ended - started),
        "redis_cpu_us_per_task": round(redis_cpu / n * 1e6, 1),
    }


async def drain(url: str, n: int, workers: int) -> float:
    """No-op tasks/s of a pool started on a full queue: the worker side alone."""
    await flush(url)
    async with bench_client(url) as client:
        await submit_all(client, n, {"task_type": "bench.noop"})
    async with running_pool(url, workers, [NOOP]) as pool:
        started = time.perf_counter()
        ended = await until(lambda: pool.completed >= n, 300, "drain completions")
    return rate(n, ended - started)


async def paced(
    client: Client, n: int, spacing_s: float, submit: Callable[[int], Awaitable[object]]
) -> list[float]:
    """Call ``submit(i)`` every ``spacing_s`` on a fixed schedule; return each send time."""
    sent: list[float] = []
    first = time.perf_counter()
    for i in range(n):
        delay = first + i * spacing_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(time.perf_counter())
        await submit(i)
    return sent


async def latency(url: str, n: int, workers: int, spacing_s: float = 0.005) -> dict[str, float]:
    """Submit -> handler start on an idle pool, tasks ``spacing_s`` apart."""
    await flush(url)
    probe = Probe("bench.probe")
    async with (
        running_pool(url, workers, [NOOP, probe.task_type]) as pool,
        bench_client(url) as client,
    ):
        await warm_up(client, pool)
        await until(lambda: not pool.held, 10, "idle pool")

        async def submit(i: int) -> object:
            return await client.submit("bench.probe", {"i": i})

        sent = await paced(client, n, spacing_s, submit)
        await until(lambda: len(probe.started) >= n, 60, "latency probes")
    return latency_ms([probe.started[i] - sent[i] for i in range(n)])


async def io(url: str, n: int, workers: int, sleep_s: float) -> dict[str, float]:
    """Tasks that await ``sleep_s``: tasks/s and achieved concurrency as a fraction of ideal."""
    await flush(url)
    probe = Probe("bench.io", sleep_s)
    async with (
        running_pool(url, workers, [NOOP, probe.task_type]) as pool,
        bench_client(url) as client,
    ):
        await warm_up(client, pool)
        done = asyncio.create_task(completions(pool, n, "io completions"))
        started = time.perf_counter()
        for start in range(0, n, SUBMIT_BATCH):
            size = min(SUBMIT_BATCH, n - start)
            await client.submit_many(
                [{"task_type": "bench.io", "payload": {"i": start + k}} for k in range(size)]
            )
        ended = await done
    ideal_s = math.ceil(n / workers) * sleep_s  # every worker busy all the time
    return {"per_s": rate(n, ended - started), "efficiency": round(ideal_s / (ended - started), 3)}


async def priority(
    url: str, n_high: int, workers: int, task_s: float = 0.02, spacing_s: float = 0.025
) -> dict[str, Any]:
    """Wait of priority-10 tasks while low-priority ``task_s`` tasks saturate the pool."""
    await flush(url)
    low = Probe("bench.low", task_s)
    high = Probe("bench.high")
    # Enough backlog to outlast the probes by 60 %: the pool stays saturated throughout.
    n_low = int(n_high * spacing_s * workers / task_s * 1.6) + 4 * workers
    types = [NOOP, low.task_type, high.task_type]
    async with running_pool(url, workers, types) as pool, bench_client(url) as client:
        await warm_up(client, pool)
        for start in range(0, n_low, SUBMIT_BATCH):
            size = min(SUBMIT_BATCH, n_low - start)
            items = [
                {"task_type": "bench.low", "priority": 1, "payload": {"i": start + k}}
                for k in range(size)
            ]
            await client.submit_many(items)
        await until(lambda: len(pool.held) >= pool.capacity, 10, "saturated pool")

        async def submit(i: int) -> object:
            return await client.submit("bench.high", {"i": i}, priority=10)

        sent = await paced(client, n_high, spacing_s, submit)
        await until(lambda: len(high.started) >= n_high, 60, "priority probes")
        saturated = len(low.started) < n_low
    result: dict[str, Any] = latency_ms([high.started[i] - sent[i] for i in range(n_high)])
    prefetch_s = pool.config.prefetch / workers * task_s
    result |= {"bound_ms": round((task_s + prefetch_s) * 1000, 1), "saturated": saturated}
    return result


async def redis_bytes_per_task(url: str, n: int, workers: int) -> float:
    """Growth of Redis used_memory per finished no-op task kept for retention.

    Measured between two rounds of ``n`` tasks, streams trimmed after each (the supervisor
    does it every few sweeps), so the capped events stream is full in both and fixed costs
    cancel out.
    """
    await flush(url)
    memory: list[int] = []
    async with running_pool(url, workers, [NOOP]) as pool, bench_client(url) as client:
        for _ in range(2):
            done = asyncio.create_task(completions(pool, n, "memory completions"))
            await submit_all(client, n, {"task_type": "bench.noop"})
            await done
            await pool.store.trim("default")
            memory.append(await used_memory(url))
    return round((memory[1] - memory[0]) / n, 1)


async def chord(url: str, n: int, workers: int) -> dict[str, float]:
    """The cost of a workflow: ``n`` no-op tasks submitted plain, then as a chord of ``n``
    members and one callback (``client.submit_workflow``), each from the submit to the last
    completion on the same pool; tasks/s of each, the Redis CPU time per task of each, and
    ``overhead``: how much longer the chord took per task than the plain tasks."""
    await flush(url)
    flow = canvas.chord([canvas.step("bench.noop") for _ in range(n)], canvas.step("bench.noop"))
    async with running_pool(url, workers, [NOOP]) as pool, bench_client(url) as client:
        await warm_up(client, pool)
        runs: dict[str, tuple[float, float]] = {}
        for label, count in (("plain", n), ("chord", n + 1)):
            done = asyncio.create_task(completions(pool, count, f"{label} completions"))
            redis_cpu = await cpu_seconds(url)
            started = time.perf_counter()
            if label == "plain":
                await submit_all(client, n, {"task_type": "bench.noop"})
            else:
                await client.submit_workflow(flow, name="bench chord")
            ended = await done
            runs[label] = (ended - started, await cpu_seconds(url) - redis_cpu)
    (plain_s, plain_cpu), (chord_s, chord_cpu) = runs["plain"], runs["chord"]
    return {
        "plain_per_s": rate(n, plain_s),
        "chord_per_s": rate(n + 1, chord_s),
        "overhead": round((chord_s / (n + 1)) / (plain_s / n), 2),
        "plain_redis_cpu_us_per_task": round(plain_cpu / n * 1e6, 1),
        "chord_redis_cpu_us_per_task": round(chord_cpu / (n + 1) * 1e6, 1),
    }
