"""Running a real WorkerPool and Supervisor against the session Redis inside a test."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from taskd.engine.context import Context
from taskd.engine.pool import PoolConfig, WorkerPool
from taskd.engine.registry import Registry, TaskType
from taskd.engine.supervisor import Supervisor, SupervisorConfig
from taskd.model import Task, make_spec
from taskd.store import Store
from tests.conftest import eventually

_consumers = itertools.count()


def registry_of(**handlers: Callable[..., Any]) -> Registry:
    """A registry with the given task type -> handler functions."""
    return Registry(TaskType(name=name, func=func) for name, func in handlers.items())


@asynccontextmanager
async def running_pool(
    store: Store,
    registry: Registry,
    queue: str,
    *,
    lease_s: float = 5.0,
    sweep_interval_s: float = 0.05,
    retention_s: float = 3600.0,
    supervise: bool = True,
    consumer: str = "",
    **pool_options: Any,
) -> AsyncIterator[WorkerPool]:
    """A pool (and supervisor) consuming ``queue`` until the block exits."""
    stop = asyncio.Event()
    consumer = consumer or f"test:{queue}:{next(_consumers)}"
    options: dict[str, Any] = {
        "concurrency": 4,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "shutdown_grace_s": 5.0,
        "lease_s": lease_s,
    }
    options["queues"] = (queue,)
    options.update(pool_options)
    pool = WorkerPool(store, registry, consumer, PoolConfig(**options))
    jobs = [asyncio.create_task(pool.run(stop))]
    if supervise:
        supervisor = Supervisor(
            store,
            consumer,
            SupervisorConfig(
                lease_s=lease_s,
                sweep_interval_s=sweep_interval_s,
                retention_s=retention_s,
                queues=tuple(q.split(":")[0] for q in options["queues"]),
            ),
        )
        jobs.append(asyncio.create_task(supervisor.run(stop)))
    await pool.started.wait()
    try:
        yield pool
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*jobs), timeout=30)


@dataclass
class HeldBehind:
    """A pool of one runner busy with ``first`` (until ``gate`` is set) while ``second``
    waits reserved in its prefetch buffer; ``ran`` names the tasks whose handler began."""

    pool: WorkerPool
    first: Task
    second: Task
    gate: asyncio.Event
    ran: list[str]


@asynccontextmanager
async def one_running_one_reserved(
    store: Store, queue: str, **pool_options: Any
) -> AsyncIterator[HeldBehind]:
    """Two ``work`` tasks on a one-runner pool with a prefetch of one, yielded once the
    first runs and the second is held reserved behind it."""
    gate = asyncio.Event()
    ran: list[str] = []

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        ran.append(payload["name"])
        await gate.wait()

    async with running_pool(
        store, registry_of(work=work), queue, concurrency=1, prefetch=1, **pool_options
    ) as pool:
        (first, _), (second, _) = await store.submit(
            [
                make_spec("work", {"name": "first"}, queue=queue),
                make_spec("work", {"name": "second"}, queue=queue),
            ]
        )
        await eventually(lambda: asyncio.sleep(0, result=second.id in pool.held and ran))
        yield HeldBehind(pool, first, second, gate, ran)
