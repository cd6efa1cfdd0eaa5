"""Mixed fleets: daemons with different handler sets share a queue without failing each
other's tasks."""

from __future__ import annotations

from typing import Any

from taskd.engine.context import Context
from taskd.model import FINISHED, Status, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.pooltools import registry_of, running_pool


async def test_a_worker_hands_back_a_type_it_lacks_to_one_that_runs_it(
    store: Store, queue: str
) -> None:
    """A pool without the handler for a type never runs or fails its tasks: it hands them
    back without using an attempt, and the pool that has the handler runs them all."""
    ran_by: dict[str, str] = {}

    def runner(name: str) -> Any:
        async def work(ctx: Context, payload: dict[str, Any]) -> None:
            ran_by[ctx.task.id] = name

        return work

    async def other(ctx: Context, payload: dict[str, Any]) -> None:
        return None

    lacking = registry_of(other=other)
    having = registry_of(other=other, resize=runner("having"))
    async with (
        running_pool(store, lacking, queue, concurrency=4, block_ms=50),
        running_pool(store, having, queue, concurrency=1, supervise=False, block_ms=50),
    ):
        submitted = await store.submit([make_spec("resize", queue=queue) for _ in range(20)])

        async def all_finished() -> list[Any] | None:
            tasks = [await store.get(task.id) for task, _ in submitted]
            return tasks if all(t.status in FINISHED for t in tasks) else None

        done = await eventually(all_finished, 30)
    assert {t.status for t in done} == {Status.COMPLETED}
    assert {t.retry_count for t in done} == {0}
    assert set(ran_by.values()) == {"having"}


async def test_a_type_no_live_worker_runs_fails_clearly(store: Store, queue: str) -> None:
    """A task whose type no live worker of its queue runs fails with a clear error."""
    async with running_pool(store, registry_of(), queue):
        ((task, _),) = await store.submit([make_spec("nobody_runs_this", queue=queue)])

        async def finished() -> Any:
            found = await store.get(task.id)
            return found if found.status in FINISHED else None

        done = await eventually(finished, 10)
    assert done.status == Status.FAILED
    assert done.error == "no handler registered for task type 'nobody_runs_this'"
    assert (await store.stats(queue))["failed"] == 1
