"""taskd.chain / group / chord / Workflow and the client's workflow methods, run by a
real pool on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import taskd
from taskd.engine.context import Context
from taskd.store import Store
from tests.flowtools import submit as flow_submit
from tests.pooltools import registry_of, running_pool


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[taskd.Client]:
    """A client on the session Redis."""
    c = taskd.Client(redis_url)
    yield c
    await c.close()


async def add(ctx: Context, payload: dict[str, Any]) -> int:
    return int(payload.get("n", 0)) + sum(int(v) for v in ctx.parents.values())


async def test_unknown_type_refused_naming_the_task(client: taskd.Client, queue: str) -> None:
    """The client checks each task's type as submit does, naming the task's key."""
    flow = taskd.chain(taskd.step("nobody-runs-this", key="x", queue=queue))
    with pytest.raises(taskd.ValidationError, match=r"tasks\.x\.task_type"):
        await client.submit_workflow(flow)


def test_chain_group_chord_bodies() -> None:
    """chain links members one after another, a group's members share their parents,
    and a chord's callback depends on every member."""
    flow = taskd.chain(
        taskd.step("a", key="a"),
        taskd.chord(
            [taskd.step("b", key="b1"), taskd.step("b", key="b2")], taskd.step("c", key="c")
        ),
    )
    deps = {t["key"]: t["depends_on"] for t in flow.body()["tasks"]}
    assert deps == {"a": [], "b1": ["a"], "b2": ["a"], "c": ["b1", "b2"]}


async def test_submit_and_wait_workflow(client: taskd.Client, store: Store, queue: str) -> None:
    """A chain submitted by the client runs to completion; wait_workflow returns it with
    each result (a step's result flows to the next through ctx.parents)."""
    flow = taskd.chain(*(taskd.step("add", {"n": 1}, queue=queue) for _ in range(3)))
    async with running_pool(store, registry_of(add=add), queue):
        view = await client.submit_workflow(flow, name="adds")
        assert view["status"] in ("running", "completed")
        done = await client.wait_workflow(view["id"], timeout_s=30)
    assert done["status"] == "completed"
    assert [t["result"] for t in done["tasks"].values()] == [1, 2, 3]
    listed, _ = await client.list_workflows(status="completed", limit=200)
    assert view["id"] in [w["id"] for w in listed]


@pytest.mark.timeout(400)  # 10,000 real tasks through one pool on a shared 2-core machine
async def test_chord_of_10000_releases_callback_once(
    client: taskd.Client, store: Store, queue: str
) -> None:
    """A chord of 10,000 members run by a pool releases its callback exactly once, which
    sees all 10,000 results."""
    n = int(__import__("os").environ.get("WF_N", "10000"))
    seen: list[int] = []

    async def total(ctx: Context, payload: dict[str, Any]) -> int:
        seen.append(len(ctx.parents))
        return sum(int(v) for v in ctx.parents.values())

    flow = taskd.chord(
        [taskd.step("add", {"n": 1}, queue=queue) for _ in range(n)],
        taskd.step("total", key="total", queue=queue),
    )
    async with running_pool(store, registry_of(add=add, total=total), queue, concurrency=32):
        view = await client.submit_workflow(flow)
        done = await client.wait_workflow(view["id"], timeout_s=300)
    assert done["status"] == "completed"
    assert done["tasks"]["total"]["result"] == n
    assert seen == [n]
    callback = done["tasks"]["total"]["id"]
    events = await store.redis.xrange(store.keys(queue).events, count=1_000_000)
    assert [e["kind"] for _, e in events if e["id"] == callback].count("released") == 1
    stats = await store.stats(queue)
    assert (stats["completed"], stats["waiting"], stats["pending"]) == (n + 1, 0, 0)


async def test_sync_client_submits_and_waits(redis_url: str, store: Store, queue: str) -> None:
    """taskd.SyncClient submits a group and waits for it from a thread."""
    flow = taskd.group(*(taskd.step("add", {"n": n}, queue=queue) for n in (1, 2)))
    sync = taskd.SyncClient(redis_url)
    try:
        async with running_pool(store, registry_of(add=add), queue):
            view = await asyncio.to_thread(sync.submit_workflow, flow, name="sync")
            done = await asyncio.to_thread(sync.wait_workflow, view["id"], 30)
    finally:
        await asyncio.to_thread(sync.close)
    assert done["status"] == "completed"
    assert sorted(t["result"] for t in done["tasks"].values()) == [1, 2]


async def _three_workflows(store: Store, queue: str) -> list[str]:
    """Three one-task workflows, oldest first, the middle one cancelled (nothing runs
    them)."""
    ids = []
    for n in range(3):
        spec = await flow_submit(store, [{"key": "a", "task_type": "add", "queue": queue}], f"l{n}")
        ids.append(spec.id)
    await store.cancel_workflow(ids[1])
    return ids


async def test_list_workflows_filters_by_status_and_pages(
    client: taskd.Client, store: Store, queue: str
) -> None:
    """Client.list_workflows takes the filters of GET /api/workflows: status selects, and
    following the cursor one at a time walks newest first without repeats."""
    ids = await _three_workflows(store, queue)
    cancelled, _ = await client.list_workflows(status="cancelled", limit=200)
    running, _ = await client.list_workflows(status="running", limit=200)
    assert ids[1] in [w["id"] for w in cancelled]
    assert {ids[0], ids[2]} <= {w["id"] for w in running}
    assert ids[1] not in [w["id"] for w in running]
    walked: list[str] = []
    cursor = None
    while len(walked) < 3:
        page, cursor = await client.list_workflows(limit=1, cursor=cursor)
        assert len(page) == 1
        assert cursor is not None
        walked.append(page[0]["id"])
    assert walked == ids[::-1]
    assert set(page[0]) >= {"id", "name", "status", "created_at", "counts"}


async def test_list_workflows_refuses_bad_filters(client: taskd.Client) -> None:
    """An unknown status, a limit out of range or a foreign cursor is a ValidationError
    naming the argument."""
    for kwargs, field in (
        ({"status": "done"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"cursor": "nope"}, "cursor"),
    ):
        with pytest.raises(taskd.ValidationError) as caught:
            await client.list_workflows(**kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field


async def test_sync_client_lists_workflows(redis_url: str, store: Store, queue: str) -> None:
    """taskd.SyncClient.list_workflows answers like the async client's, from a thread."""
    ids = await _three_workflows(store, queue)
    sync = taskd.SyncClient(redis_url)
    try:
        cancelled, _ = await asyncio.to_thread(sync.list_workflows, status="cancelled")
        first, cursor = await asyncio.to_thread(sync.list_workflows, limit=1)
        second, _ = await asyncio.to_thread(sync.list_workflows, limit=1, cursor=cursor)
    finally:
        await asyncio.to_thread(sync.close)
    assert ids[1] in [w["id"] for w in cancelled]
    assert [first[0]["id"], second[0]["id"]] == [ids[2], ids[1]]


async def test_chord_callback_sees_header_results_in_header_order(
    client: taskd.Client, store: Store, queue: str
) -> None:
    """A chord's callback gets its header's results in ctx.parents in header order (the
    12th member after the 2nd, not sorted as text), and its depends_on lists them so."""
    seen: list[Any] = []

    async def member(ctx: Context, payload: dict[str, Any]) -> Any:
        if "i" in payload:
            return payload["i"]
        seen.extend(ctx.parents.values())
        return None

    flow = taskd.chord(
        [taskd.step("member", {"i": i}, queue=queue) for i in range(12)],
        taskd.step("member", {}, key="callback", queue=queue),
    )
    async with running_pool(store, registry_of(member=member), queue):
        view = await client.submit_workflow(flow)
        done = await client.wait_workflow(view["id"], timeout_s=30)
    assert done["status"] == "completed"
    assert seen == list(range(12))
    assert done["tasks"]["callback"]["depends_on"] == [f"member-{i}" for i in range(1, 13)]


def test_generated_keys_avoid_keys_named_later() -> None:
    """A step without a key never takes one that a later step names itself: the body
    is valid, each key once."""
    flow = taskd.chain(taskd.step("echo"), taskd.step("echo", key="echo-1"))
    keys = [t["key"] for t in flow.body()["tasks"]]
    assert keys[1] == "echo-1"
    assert len(set(keys)) == 2


async def test_workflow_ids_are_checked_as_the_api_does(client: taskd.Client) -> None:
    """get_workflow, cancel_workflow and wait_workflow refuse an id that is not a
    non-empty string with ValidationError naming workflow_id (was a TypeError from a
    regular expression), and answer WorkflowNotFound for a well-formed unknown one."""
    for method in (client.get_workflow, client.cancel_workflow, client.wait_workflow):
        for bad in (None, 123, ""):
            with pytest.raises(taskd.ValidationError) as info:
                await method(bad)  # type: ignore[arg-type]
            assert info.value.field == "workflow_id", (method, bad)
        with pytest.raises(taskd.TaskdError, match="not found"):
            await method("0" * 32)
