"""The engine's states under faults, on real Redis with real pools: reserved vs processing,
cancels that must not be missed, and fetch replies that were lost."""

from __future__ import annotations

import asyncio
from typing import Any

from taskd.engine.context import Context
from taskd.model import FINISHED, Status, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.pooltools import one_running_one_reserved, registry_of, running_pool


async def wait_finished(store: Store, task_id: str, timeout_s: float = 10.0) -> Any:
    """Poll until the task is finished and return it."""

    async def finished() -> Any:
        task = await store.get(task_id)
        return task if task.status in FINISHED else None

    return await eventually(finished, timeout_s)


async def test_a_cancel_of_a_prefetched_task_never_runs_its_handler(
    store: Store, queue: str
) -> None:
    """A task waiting in a worker's prefetch buffer is cancelled at once when asked, and its
    handler never runs (it was reserved, not started)."""
    async with one_running_one_reserved(store, queue) as held:
        pool, first, second, ran = held.pool, held.first, held.second, held.ran
        assert (await store.get(second.id)).status == Status.RESERVED
        assert await store.cancel(second.id) == "cancelled"
        held.gate.set()
        await wait_finished(store, first.id)
        await eventually(lambda: asyncio.sleep(0, result=not pool.held))
    assert ran == ["first"]
    assert (await store.get(second.id)).status == Status.CANCELLED
    stats = await store.stats(queue)
    assert (stats["cancelled"], stats["completed"], stats["reserved"]) == (1, 1, 0)


async def test_processing_never_exceeds_the_running_slots_of_several_pools(
    store: Store, queue: str
) -> None:
    """Under load with three pools (2 runners, 2 prefetched each), the stats never count more
    tasks processing than runners exist; the prefetched ones show as reserved."""

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.02)

    registry = registry_of(work=work)
    seen: list[tuple[int, int]] = []
    async with (
        running_pool(store, registry, queue, concurrency=2, prefetch=2),
        running_pool(store, registry, queue, concurrency=2, prefetch=2, supervise=False),
        running_pool(store, registry, queue, concurrency=2, prefetch=2, supervise=False),
    ):
        await store.submit([make_spec("work", queue=queue) for _ in range(150)])

        async def drained() -> bool:
            stats = await store.stats(queue)
            seen.append((stats["processing"], stats.get("reserved", 0)))
            return stats["completed"] == 150

        await eventually(drained, 30, interval_s=0.005)
    assert max(p for p, _ in seen) <= 6
    assert max(r for _, r in seen) > 0


async def test_tasks_reserved_by_a_fetch_whose_reply_was_lost_use_no_attempt(
    store: Store, queue: str
) -> None:
    """A fetch applied by Redis whose reply the pool never read (a timeout) leaves tasks in
    the pool's name that it does not hold: they are handed back and run once, without an
    attempt used (with max_retries=0 they would otherwise fail as worker lost)."""
    ran: list[str] = []

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        ran.append(ctx.task.id)

    submitted = await store.submit(
        [make_spec("work", queue=queue, max_retries=0) for _ in range(3)]
    )
    consumer = f"test:{queue}:lost"
    lost = await store.reserve_ready(queue, consumer, 3)  # applied; its reply never read
    assert len(lost.tasks) == 3
    registry = registry_of(work=work)
    async with running_pool(store, registry, queue, lease_s=0.6, consumer=consumer):
        done = [await wait_finished(store, task.id) for task, _ in submitted]
    assert {t.status for t in done} == {Status.COMPLETED}
    assert {t.retry_count for t in done} == {0}
    assert sorted(ran) == sorted(t.id for t in done)


async def test_a_cancel_missed_by_the_pubsub_reaches_the_handler_at_lease_renewal(
    store: Store, queue: str
) -> None:
    """When the cancel publish never reaches the holder (its subscription was down), the
    running attempt still learns of the request from its next lease renewal."""
    entered = asyncio.Event()
    was_cancelled = asyncio.Event()

    async def long(ctx: Context, payload: dict[str, Any]) -> None:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            was_cancelled.set()
            raise

    async with running_pool(store, registry_of(long=long), queue, lease_s=0.6):
        ((task, _),) = await store.submit([make_spec("long", queue=queue)])
        await asyncio.wait_for(entered.wait(), 10)
        # What cancel.lua writes for a running task, without the publish the pool missed.
        await store.redis.hset(store.keys(queue).task(task.id), "cancel", "1")
        await asyncio.wait_for(was_cancelled.wait(), 10)
        done = await wait_finished(store, task.id)
    assert done.status == Status.CANCELLED


async def test_tasks_started_by_a_fetch_whose_reply_was_lost_run_once_without_an_attempt(
    store: Store, queue: str
) -> None:
    """A fetch that started tasks for idle runners (status processing) and whose reply was
    lost leaves them in the pool's name, unheld: the renewal hands them back and they run
    once with no attempt used, instead of waiting for the lease to lapse."""
    ran: list[str] = []

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        ran.append(ctx.task.id)

    submitted = await store.submit(
        [make_spec("work", queue=queue, max_retries=0) for _ in range(3)]
    )
    consumer = f"test:{queue}:lost-started"
    lost = await store.reserve_ready(queue, consumer, 3, start=3)  # its reply never read
    assert {t.status for t in lost.tasks} == {Status.PROCESSING}
    assert (await store.stats(queue))["processing"] == 3
    async with running_pool(store, registry_of(work=work), queue, lease_s=0.6, consumer=consumer):
        done = [await wait_finished(store, task.id) for task, _ in submitted]
    assert {t.status for t in done} == {Status.COMPLETED}
    assert {t.retry_count for t in done} == {0}
    assert sorted(ran) == sorted(t.id for t in done)
    stats = await store.stats(queue)
    assert (stats["processing"], stats["pending"], stats["completed"]) == (0, 0, 3)


async def test_a_cancel_of_a_task_started_for_an_idle_runner_before_it_runs(
    store: Store, queue: str
) -> None:
    """A cancel that arrives after the fetch started a task for an idle runner but before
    the runner took it from the buffer is honoured: the handler never runs."""
    ran: list[str] = []

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        ran.append(ctx.task.id)

    ((task, _),) = await store.submit([make_spec("work", queue=queue)])
    consumer = f"test:{queue}:cancel-in-buffer"
    # What the pool's own fetch does for an idle runner, made here so the cancel can come
    # between the fetch and the runner's take.
    fetched = await store.reserve_ready(queue, consumer, 1, start=1)
    assert [t.status for t in fetched.tasks] == [Status.PROCESSING]
    assert await store.cancel(task.id) == "cancelling"
    registry = registry_of(work=work)
    async with running_pool(store, registry, queue, concurrency=1, consumer=consumer) as pool:
        pool._buffer(fetched.tasks)  # (no await between: no runner can take it meanwhile)
        pool._request_cancel(task.id)
        done = await wait_finished(store, task.id)
    assert done.status == Status.CANCELLED
    assert ran == []
