"""Workflow transitions on ``/ws``: created, completed, failed, cancelled and running again,
once per process, with a real WebSocket client against the real app and a real pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from taskd.store import Store
from tests.conftest import eventually
from tests.flowtools import submit as flow_submit
from tests.pooltools import running_pool
from tests.test_http_support import registry_with, serve_app
from tests.test_http_ws import Message, receive, until

Client = TestClient[Any, Any]
WS = aiohttp.ClientWebSocketResponse


async def _add(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {"sum": sum(payload.get("values", []))}


async def _boom(ctx: Any, payload: dict[str, Any]) -> None:
    raise RuntimeError("boom")


async def _hold(ctx: Any, payload: dict[str, Any]) -> None:
    await asyncio.sleep(60)


REGISTRY = registry_with(add=_add, boom=_boom, hold=_hold)


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    """The app with fast relay timing and the test types; no workers of its own."""
    async with serve_app(store, registry=REGISTRY) as c:
        yield c


def _diamond(queue: str, middle: str = "add") -> dict[str, Any]:
    other = f"{queue}b"  # a second queue: on a cluster, another slot
    return {
        "name": "diamond",
        "tasks": [
            {"key": "top", "task_type": "add", "queue": queue, "payload": {"values": [1]}},
            {
                "key": "left",
                "task_type": middle,
                "queue": other,
                "depends_on": ["top"],
                "max_retries": 0,
            },
            {"key": "right", "task_type": "add", "queue": queue, "depends_on": ["top"]},
            {"key": "join", "task_type": "add", "queue": queue, "depends_on": ["left", "right"]},
        ],
    }


def workflow_event(workflow_id: str, kind: str) -> Callable[[Message], bool]:
    """Predicate: the workflow message of one workflow and kind."""

    def check(message: Message) -> bool:
        return (
            message["type"] == "workflow"
            and message["workflow"]["id"] == workflow_id
            and message["kind"] == kind
        )

    return check


def kinds_of(messages: list[Message], workflow_id: str) -> list[str]:
    """The kinds of one workflow's messages, in order."""
    return [
        m["kind"]
        for m in messages
        if m["type"] == "workflow" and m["workflow"]["id"] == workflow_id
    ]


async def _submit(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/workflows", json=body)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def _drain(ws: WS, for_s: float = 1.0) -> list[Message]:
    """Every message of the next ``for_s`` seconds (to show that nothing more follows)."""
    seen: list[Message] = []
    deadline = time.monotonic() + for_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(await receive(ws, left))
        except TimeoutError:
            break
    return seen


async def test_created_then_completed_once(client: Client, store: Store, queue: str) -> None:
    """A client sees a workflow's creation and, after its task events, its completion with
    exact counts, each once."""
    async with client.ws_connect("/ws") as ws:
        await receive(ws)
        wf = await _submit(client, _diamond(queue))
        seen = await until(ws, workflow_event(wf["id"], "created"))
        created = seen[-1]["workflow"]
        assert (created["name"], created["status"], created["counts"]["total"]) == (
            "diamond",
            "running",
            4,
        )
        async with running_pool(store, REGISTRY, queue), running_pool(store, REGISTRY, f"{queue}b"):
            seen += await until(ws, workflow_event(wf["id"], "completed"))
        done = seen[-1]["workflow"]
        assert done["status"] == "completed"
        assert (done["counts"]["completed"], done["counts"]["total"]) == (4, 4)
        join_id = wf["tasks"]["join"]["id"]
        task_events = [
            e
            for m in seen
            if m["type"] == "events"
            for e in m["events"]
            if e["task"]["id"] == join_id
        ]
        assert task_events[-1]["task"]["status"] == "completed"  # the task event came first
        seen += await _drain(ws)
    assert kinds_of(seen, wf["id"]) == ["created", "completed"]


async def test_failed_then_running_again_after_hand_retry(
    client: Client, store: Store, queue: str
) -> None:
    """A terminal failure makes the workflow 'failed' once; a hand retry of the failed task
    makes it 'running' again."""
    async with client.ws_connect("/ws") as ws:
        await receive(ws)
        wf = await _submit(client, _diamond(queue, middle="boom"))
        async with running_pool(store, REGISTRY, queue):
            async with running_pool(store, REGISTRY, f"{queue}b"):
                seen = await until(ws, workflow_event(wf["id"], "failed"))
            failed = seen[-1]["workflow"]
            assert (failed["counts"]["failed"], failed["counts"]["cancelled"]) == (1, 1)
            left = wf["tasks"]["left"]["id"]
            assert (await client.post(f"/api/tasks/{left}/retry")).status == 200
            seen += await until(ws, workflow_event(wf["id"], "running"))
            async with running_pool(store, REGISTRY, f"{queue}b"):
                seen += await until(ws, workflow_event(wf["id"], "failed"))  # boom fails again
    assert kinds_of(seen, wf["id"]) == ["created", "failed", "running", "failed"]


async def test_cancel_is_told_once(client: Client, store: Store, queue: str) -> None:
    """Cancelling a workflow with a running task is one 'cancelled' message, not one per
    cancelled task."""
    body = {
        "name": "to cancel",
        "tasks": [
            {"key": "long", "task_type": "hold", "queue": queue},
            *(
                {"key": f"after{i}", "task_type": "add", "queue": queue, "depends_on": ["long"]}
                for i in range(20)
            ),
        ],
    }
    async with client.ws_connect("/ws") as ws:
        await receive(ws)
        wf = await _submit(client, body)
        long_id = wf["tasks"]["long"]["id"]
        async with running_pool(store, REGISTRY, queue):
            await eventually(lambda: _status_is(store, long_id, queue, "processing"))
            assert (await client.post(f"/api/workflows/{wf['id']}/cancel")).status == 200
            seen = await until(ws, workflow_event(wf["id"], "cancelled"))
            seen += await _drain(ws)
    assert kinds_of(seen, wf["id"]) == ["created", "cancelled"]


async def _status_is(store: Store, task_id: str, queue: str, status: str) -> bool:
    return str((await store.get(task_id, queue)).status) == status


async def test_workflow_created_before_the_process_started_is_told_when_it_ends(
    store: Store, queue: str
) -> None:
    """A workflow submitted before this process's relay started (its creation unseen, its
    tasks' workflow looked up) still reaches a client as 'completed', once."""
    spec = await flow_submit(store, _diamond(queue)["tasks"], name="diamond")
    async with serve_app(store, registry=REGISTRY) as client, client.ws_connect("/ws") as ws:
        await receive(ws)
        async with running_pool(store, REGISTRY, queue), running_pool(store, REGISTRY, f"{queue}b"):
            seen = await until(ws, workflow_event(spec.id, "completed"))
        assert seen[-1]["workflow"]["counts"]["completed"] == 4
        seen += await _drain(ws)
    assert kinds_of(seen, spec.id) == ["completed"]


async def test_every_process_tells_its_own_clients_once(store: Store, queue: str) -> None:
    """Two processes (two apps, two relays) on one Redis: each of their clients gets the
    workflow's completion exactly once."""
    async with AsyncExitStack() as stack:
        apps = [await stack.enter_async_context(serve_app(store, registry=REGISTRY)) for _ in "ab"]
        sockets = [await stack.enter_async_context(app.ws_connect("/ws")) for app in apps]
        for ws in sockets:
            await receive(ws)
        wf = await _submit(apps[0], _diamond(queue))
        async with running_pool(store, REGISTRY, queue), running_pool(store, REGISTRY, f"{queue}b"):
            seen = [await until(ws, workflow_event(wf["id"], "completed")) for ws in sockets]
        for ws, messages in zip(sockets, seen, strict=True):
            later = await _drain(ws)
            assert kinds_of(messages + later, wf["id"]) == ["created", "completed"]
