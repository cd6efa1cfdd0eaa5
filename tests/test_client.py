"""The public Python client against real Redis and a real worker pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import taskd
from taskd.engine.context import Context
from taskd.store import Store
from tests.conftest import eventually
from tests.pooltools import registry_of, running_pool


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[taskd.Client]:
    """A client on the session Redis."""
    c = taskd.Client(redis_url)
    yield c
    await c.close()


async def echo(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload."""
    return payload


async def test_submit_and_wait_returns_the_result(
    client: taskd.Client, store: Store, queue: str
) -> None:
    """wait() follows events until the task finishes and returns it."""
    async with running_pool(store, registry_of(echo=echo), queue):
        task = await client.submit("echo", {"x": 1}, queue=queue, priority=9, name="hello")
        done = await client.wait(task.id, timeout_s=10)
    assert done.status == taskd.Status.COMPLETED
    assert done.result == {"x": 1}
    assert (done.name, done.priority) == ("hello", 9)


async def test_wait_times_out(client: taskd.Client, queue: str) -> None:
    """wait() raises TimeoutError when nothing runs the task in time."""
    task = await client.submit("echo", queue=queue)
    with pytest.raises(TimeoutError):
        await client.wait(task.id, timeout_s=0.2)


async def test_submit_validation_names_the_field(client: taskd.Client, queue: str) -> None:
    """Bad arguments raise ValidationError naming the field, and nothing is stored."""
    with pytest.raises(taskd.ValidationError) as info:
        await client.submit("echo", queue=queue, priority=11)
    assert info.value.field == "priority"
    with pytest.raises(taskd.ValidationError) as info:
        await client.submit("echo", queue=queue, run_at="tomorrow")
    assert info.value.field == "run_at"
    assert (await client.stats(queue))["total"] == 0


async def test_submit_many_is_all_or_nothing(client: taskd.Client, queue: str) -> None:
    """One bad item rejects the whole batch with its index; a good batch is stored."""
    with pytest.raises(taskd.ValidationError) as info:
        await client.submit_many(
            [
                {"task_type": "echo", "queue": queue},
                {"task_type": "echo", "queue": queue, "priority": 0},
            ]
        )
    assert info.value.field == "[1].priority"
    assert (await client.stats(queue))["total"] == 0
    tasks = await client.submit_many(
        [{"task_type": "echo", "payload": {"i": i}, "queue": queue} for i in range(100)]
    )
    assert [t.payload["i"] for t in tasks] == list(range(100))
    assert (await client.stats(queue))["pending"] == 100


async def test_list_filters_by_status_and_pages(client: taskd.Client, queue: str) -> None:
    """list() pages newest first and filters by status."""
    tasks = await client.submit_many([{"task_type": "echo", "queue": queue} for _ in range(25)])
    for task in tasks[:5]:
        await client.cancel(task.id)
    page = await client.list(limit=10, queue=queue)
    assert [t.id for t in page.tasks] == [t.id for t in reversed(tasks)][:10]
    assert page.next_cursor
    rest = await client.list(limit=100, queue=queue, cursor=page.next_cursor)
    assert len(rest.tasks) == 15
    assert rest.next_cursor is None
    cancelled = await client.list(status="cancelled", queue=queue)
    assert sorted(t.id for t in cancelled.tasks) == sorted(t.id for t in tasks[:5])


async def test_cancel_and_retry(client: taskd.Client, queue: str) -> None:
    """A cancelled task can be retried back to pending."""
    task = await client.submit("echo", queue=queue)
    assert await client.cancel(task.id) == "cancelled"
    again = await client.retry(task.id)
    assert again.status == taskd.Status.PENDING
    with pytest.raises(taskd.WrongState):
        await client.retry(task.id)


async def test_unique_key_returns_existing_task(client: taskd.Client, queue: str) -> None:
    """A second submit with the same unique_key returns the first task."""
    first, second = await asyncio.gather(
        client.submit("echo", {"n": 1}, queue=queue, unique_key="k"),
        client.submit("echo", {"n": 2}, queue=queue, unique_key="k"),
    )
    assert first.id == second.id


async def test_progress_is_visible_while_running(
    client: taskd.Client, store: Store, queue: str
) -> None:
    """Progress reported by a handler is readable before the task completes."""
    gate = asyncio.Event()

    async def stepper(ctx: Context, payload: dict[str, Any]) -> None:
        await ctx.progress(40, "forty")
        await gate.wait()

    async with running_pool(store, registry_of(stepper=stepper), queue, progress_interval_s=0):
        task = await client.submit("stepper", queue=queue)

        async def at_forty() -> bool:
            t = await client.get(task.id)
            return t.progress == 40 and t.progress_message == "forty"

        await eventually(at_forty)
        gate.set()
        done = await client.wait(task.id, timeout_s=10)
    assert done.progress == 100
