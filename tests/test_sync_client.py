"""taskd.SyncClient, the blocking client, against real Redis and a real worker pool."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import taskd
from taskd.engine.context import Context
from taskd.store import Store
from tests.pooltools import registry_of, running_pool


async def echo(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload."""
    return payload


@pytest.fixture
def sync(redis_url: str) -> Iterator[taskd.SyncClient]:
    """A blocking client on the session Redis that knows the type these tests submit."""
    with taskd.SyncClient(redis_url, registry=registry_of(echo=echo)) as client:
        yield client


async def test_submit_then_wait_returns_the_result(
    sync: taskd.SyncClient, store: Store, queue: str
) -> None:
    """A task submitted from a thread runs, and wait() blocks until it is completed."""
    async with running_pool(store, registry_of(echo=echo), queue):
        task = await asyncio.to_thread(sync.submit, "echo", {"x": 1}, queue=queue, priority=8)
        done = await asyncio.to_thread(sync.wait, task.id, 10)
    assert done.status == taskd.Status.COMPLETED
    assert done.result == {"x": 1}
    assert done.priority == 8


def test_submit_from_many_threads_at_once(sync: taskd.SyncClient, queue: str) -> None:
    """Eight threads sharing one client submit 100 tasks each: 800 distinct tasks stored."""

    def submit_100(t: int) -> list[str]:
        return [sync.submit("echo", {"t": t, "i": i}, queue=queue).id for i in range(100)]

    with ThreadPoolExecutor(8) as threads:
        ids = [i for batch in threads.map(submit_100, range(8)) for i in batch]
    assert len(set(ids)) == 800
    assert sync.stats(queue)["pending"] == 800


def test_bad_submit_is_refused_and_stores_nothing(redis_url: str, queue: str) -> None:
    """Unknown types, a built-in's bad payload and out-of-range fields raise ValidationError
    naming the field, as the HTTP API answers 422; nothing is stored."""
    with taskd.SyncClient(redis_url) as plain:
        for args, kw, field in (
            (("nosuch", {}), {}, "task_type"),
            (("email", {"to": "bad"}), {}, "payload"),
            (("email", {"to": "a@example.com", "subject": "s"}), {"priority": 0}, "priority"),
        ):
            with pytest.raises(taskd.ValidationError) as info:
                plain.submit(*args, queue=queue, **kw)
            assert info.value.field.startswith(field)
        assert plain.stats(queue)["total"] == 0


def test_list_cancel_retry_and_get(sync: taskd.SyncClient, queue: str) -> None:
    """submit_many, list, cancel, retry and get behave as the async client's."""
    tasks = sync.submit_many([{"task_type": "echo", "queue": queue} for _ in range(5)])
    assert sync.cancel(tasks[0].id) == "cancelled"
    page = sync.list(status="cancelled", queue=queue)
    assert [t.id for t in page.tasks] == [tasks[0].id]
    assert sync.retry(tasks[0].id).status == taskd.Status.PENDING
    assert sync.get(tasks[1].id).id == tasks[1].id
    with pytest.raises(taskd.TaskNotFound):
        sync.get("0" * 32)


def test_unique_key_returns_the_existing_task(sync: taskd.SyncClient, queue: str) -> None:
    """A second submit with the same unique key returns the first task."""
    first = sync.submit("echo", {"n": 1}, queue=queue, unique_key="k")
    second = sync.submit("echo", {"n": 2}, queue=queue, unique_key="k")
    assert second.id == first.id
    assert sync.stats(queue)["total"] == 1


async def test_submit_survives_script_flush_and_killed_connections(
    sync: taskd.SyncClient, store: Store, queue: str
) -> None:
    """After SCRIPT FLUSH and after Redis closed every client connection, the next
    submit succeeds and creates its task once."""
    await asyncio.to_thread(sync.submit, "echo", queue=queue)
    await store.redis.script_flush()
    await asyncio.to_thread(sync.submit, "echo", queue=queue)
    await store.redis.client_kill_filter(_type="normal", skipme=True)
    await asyncio.to_thread(sync.submit, "echo", queue=queue)
    assert (await store.stats(queue))["pending"] == 3


def test_close_then_reuse_reconnects(redis_url: str, queue: str) -> None:
    """A closed client starts again on its next call (a script that closes and reuses)."""
    client = taskd.SyncClient(redis_url, registry=registry_of(echo=echo))
    client.submit("echo", queue=queue)
    client.close()
    client.submit("echo", queue=queue)
    assert client.stats(queue)["pending"] == 2
    client.close()


def test_submit_many_of_one_mapping_is_refused(sync: taskd.SyncClient, queue: str) -> None:
    """SyncClient.submit_many given one mapping instead of a list refuses it as "items",
    as Client does (it was turned into the list of its keys first), and stores nothing."""
    with pytest.raises(taskd.ValidationError) as info:
        sync.submit_many({"task_type": "echo", "queue": queue})  # type: ignore[arg-type]
    assert info.value.field == "items"
    assert sync.stats(queue)["total"] == 0


ASYNC_ONLY = {"store", "known_types"}  # the connected Store and KnownTypes: asyncio objects


def test_every_public_client_method_exists_with_the_same_parameters() -> None:
    """SyncClient has every public method and property of Client with the same
    parameters and defaults (spec, settings, registry and check_types were missing)."""
    for name, member in inspect.getmembers(taskd.Client):
        if name.startswith("_") or name in ASYNC_ONLY:
            continue
        assert hasattr(taskd.SyncClient, name), name
        if isinstance(member, property):
            assert isinstance(getattr(taskd.SyncClient, name), property), name
            continue
        mine = inspect.signature(getattr(taskd.SyncClient, name)).parameters
        theirs = inspect.signature(member).parameters
        assert [(p.name, p.kind, p.default) for p in mine.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name


def test_spec_and_check_types_validate_as_submit_does(sync: taskd.SyncClient, queue: str) -> None:
    """spec() builds a TaskSpec or raises ValidationError without Redis, and
    check_types() refuses a type nothing runs, as Client's do."""
    assert sync.spec("echo", {"x": 1}, queue=queue, priority=9).priority == 9
    with pytest.raises(taskd.ValidationError):
        sync.spec("echo", queue=queue, priority=0)
    unknown = sync.spec("nosuch", queue=queue)
    with pytest.raises(taskd.ValidationError) as info:
        sync.check_types([unknown])
    assert info.value.field == "task_type"
