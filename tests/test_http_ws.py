"""The /ws event stream: snapshot, live order, resume, coalescing, slow clients, many clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from taskd.engine.relay import RelayConfig, encode_position
from taskd.http.state import SERVICES
from taskd.model import make_spec
from taskd.store import Store
from tests.pooltools import running_pool
from tests.test_http_support import registry_with, serve_app

Client = TestClient[Any, Any]
WS = aiohttp.ClientWebSocketResponse
Message = dict[str, Any]


async def receive(ws: WS, timeout_s: float = 10.0) -> Message:
    """The next JSON message (fails on close or timeout)."""
    msg = await asyncio.wait_for(ws.receive(), timeout_s)
    assert msg.type is WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    message: Message = json.loads(msg.data)
    return message


async def until(ws: WS, found: Callable[[Message], bool], timeout_s: float = 10.0) -> list[Message]:
    """Messages up to and including the first one ``found`` accepts."""
    seen: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while True:
        message = await receive(ws, max(0.01, deadline - time.monotonic()))
        seen.append(message)
        if found(message):
            return seen


def events_of(messages: list[Message], task_id: str | None = None) -> list[Message]:
    """Events inside ``events`` messages, optionally of one task."""
    return [
        e
        for m in messages
        if m["type"] == "events"
        for e in m["events"]
        if task_id is None or e["task"]["id"] == task_id
    ]


def has_task(task_id: str, status: str | None = None) -> Callable[[Message], bool]:
    """Predicate: an events message carrying the task (in that status)."""

    def check(message: Message) -> bool:
        return any(
            status is None or e["task"]["status"] == status for e in events_of([message], task_id)
        )

    return check


async def _noop(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {}


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    """The app with fast relay timing and a `noop` type."""
    async with serve_app(store, registry=registry_with(noop=_noop)) as c:
        yield c


async def test_snapshot_comes_first(client: Client, store: Store, queue: str) -> None:
    """On connect: stats, the newest tasks and a resume token."""
    task = (await store.submit([make_spec("noop", queue=queue)]))[0][0]
    async with client.ws_connect("/ws") as ws:
        snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot"
    assert snapshot["reason"] == "initial"
    assert task.id in [t["id"] for t in snapshot["tasks"]]
    assert len(snapshot["tasks"]) <= 100
    assert snapshot["stats"]["total"] >= 1
    assert "throughput" in snapshot["stats"]
    assert isinstance(snapshot["last_event_id"], str)


async def test_task_seen_pending_then_processing_then_completed(
    client: Client, store: Store, queue: str
) -> None:
    """A client sees a task it submitted go pending -> processing -> completed, in order."""
    started, release = asyncio.Event(), asyncio.Event()

    async def gate(ctx: Any, payload: dict[str, Any]) -> str:
        started.set()
        await release.wait()
        return "done"

    async with client.ws_connect("/ws") as ws:
        await receive(ws)
        reply = await client.post("/api/tasks", json={"task_type": "noop", "queue": queue})
        task_id = (await reply.json())["id"]
        seen = await until(ws, has_task(task_id, "pending"))
        async with running_pool(store, registry_with(noop=gate), queue):
            await asyncio.wait_for(started.wait(), 10)
            seen += await until(ws, has_task(task_id, "processing"))
            release.set()
            seen += await until(ws, has_task(task_id, "completed"))
    statuses: list[str] = []
    for event in events_of(seen, task_id):
        if not statuses or statuses[-1] != event["task"]["status"]:
            statuses.append(event["task"]["status"])
    assert statuses == ["pending", "processing", "completed"]
    created, completed = events_of(seen, task_id)[0], events_of(seen, task_id)[-1]
    assert created["kind"] == "created"
    assert isinstance(created["task"]["priority"], int)
    assert completed["kind"] == "completed"
    assert completed["task"]["progress"] == 100
    assert completed["ts"].endswith("Z")


async def test_resume_with_since_replays_what_was_missed(
    client: Client, store: Store, queue: str
) -> None:
    """Reconnecting with ?since=<last_event_id> delivers every event since, then live ones."""
    async with client.ws_connect("/ws") as ws:
        token = (await receive(ws))["last_event_id"]
    missed = [t for t, _ in await store.submit([make_spec("noop", queue=queue) for _ in range(3)])]
    async with client.ws_connect("/ws", params={"since": token}) as ws:
        seen = await until(ws, lambda m: m["type"] == "resumed")
        assert not any(m["type"] == "snapshot" for m in seen)
        replayed = [e["task"]["id"] for e in events_of(seen) if e["queue"] == queue]
        assert replayed == [t.id for t in missed]
        assert seen[-1]["replayed"] >= 3
        live = (await store.submit([make_spec("noop", queue=queue)]))[0][0]
        later = await until(ws, has_task(live.id))
        assert not any(e["task"]["id"] in replayed for e in events_of(later))


async def test_resume_with_a_bare_event_id(client: Client, store: Store, queue: str) -> None:
    """A plain event id also works as ?since (from that moment on, in every queue)."""
    first = (await store.submit([make_spec("noop", queue=queue)]))[0][0]
    second = (await store.submit([make_spec("noop", queue=queue)]))[0][0]
    event_id = (await store.last_event_ids([queue]))[queue]
    async with client.ws_connect("/ws", params={"since": event_id}) as ws:
        seen = await until(ws, lambda m: m["type"] == "resumed")
    ids = [e["task"]["id"] for e in events_of(seen) if e["queue"] == queue]
    assert second.id in ids
    assert first.id not in ids or ids.index(first.id) < ids.index(second.id)


async def test_since_older_than_the_capped_stream_gets_a_snapshot(
    client: Client, store: Store, redis_url: str, queue: str
) -> None:
    """When events after `since` were trimmed away, the client gets a fresh snapshot."""
    small = await Store.connect(redis_url, events_maxlen=10)
    try:
        await small.submit([make_spec("noop", queue=queue) for _ in range(400)])
        assert await small.event_gaps({queue: "0-0"}) == {queue}
    finally:
        await small.close()
    position = await store.last_event_ids(await store.queues())
    position[queue] = "1-0"
    async with client.ws_connect("/ws", params={"since": encode_position(position)}) as ws:
        first = await receive(ws)
    assert first["type"] == "snapshot"
    assert first["reason"] == "since_too_old"


async def test_malformed_since_is_422(client: Client) -> None:
    """A since that is neither an event id nor a token is refused before the upgrade."""
    for since in ("garbage!", base64.urlsafe_b64encode(b'{"q": 5}').decode()):
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect("/ws", params={"since": since})
        assert caught.value.status == 422


async def test_events_are_coalesced_to_about_ten_messages_a_second(
    store: Store, queue: str
) -> None:
    """Hundreds of transitions per second reach a client as <= ~10 batches/s, one entry per
    task per batch."""
    async with (
        serve_app(store, registry=registry_with(noop=_noop), relay_config=RelayConfig()) as client,
        client.ws_connect("/ws") as ws,
    ):
        await receive(ws)
        async with running_pool(store, registry_with(noop=_noop), queue, concurrency=16):
            started = time.monotonic()
            submitted = 0
            for _ in range(20):
                submitted += len(
                    await store.submit([make_spec("noop", queue=queue) for _ in range(30)])
                )
                await asyncio.sleep(0.05)  # spread submissions over about a second
            last = (await store.submit([make_spec("noop", queue=queue)]))[0][0]
            seen = await until(ws, has_task(last.id, "completed"), timeout_s=20)
            elapsed = time.monotonic() - started
    batches = [m for m in seen if m["type"] == "events"]
    assert len(batches) <= 10 * elapsed + 2
    assert sum(len(b["events"]) for b in batches) < 3 * submitted  # created+started+completed
    for batch in batches:
        ids = [e["task"]["id"] for e in batch["events"]]
        assert len(ids) == len(set(ids))
    assert sum(1 for m in seen if m["type"] == "stats") <= elapsed + 3


def _stalled_socket(port: int) -> socket.socket:
    """A WebSocket handshake over a raw socket with a tiny receive buffer, never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return sock


async def test_stalled_client_is_dropped_and_does_not_delay_others(
    store: Store, queue: str
) -> None:
    """A client that never reads is closed (1013) once its buffer fills; another client keeps
    receiving promptly meanwhile."""
    config = RelayConfig(
        flush_interval_s=0.02, stats_interval_s=0.5, block_ms=50, subscriber_limit=4
    )
    async with serve_app(store, registry=registry_with(noop=_noop), relay_config=config) as client:
        hub = client.app[SERVICES].hub
        assert client.port is not None
        stalled = _stalled_socket(client.port)
        try:
            async with client.ws_connect("/ws") as ws:
                await receive(ws)
                name = "x" * 200
                deadline = time.monotonic() + 30
                while hub.dropped == 0:
                    assert time.monotonic() < deadline, "stalled client never dropped"
                    tasks = await store.submit(
                        [make_spec("noop", queue=queue, name=name) for _ in range(200)]
                    )
                    started = time.monotonic()
                    await until(ws, has_task(tasks[-1][0].id), timeout_s=5)
                    assert time.monotonic() - started < 2.0
                assert hub.dropped == 1
                assert len(hub.clients) == 1
                marker = (await store.submit([make_spec("noop", queue=queue)]))[0][0]
                await until(ws, has_task(marker.id), timeout_s=5)
        finally:
            stalled.close()


async def test_500_clients_all_receive_an_update(client: Client, store: Store, queue: str) -> None:
    """500 concurrent WebSocket clients of one process all see a newly submitted task."""
    url = client.make_url("/ws")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = await asyncio.gather(*(session.ws_connect(url) for _ in range(500)))
        try:
            snapshots = await asyncio.gather(*(receive(ws, 30) for ws in sockets))
            assert all(s["type"] == "snapshot" for s in snapshots)
            task = (await store.submit([make_spec("noop", queue=queue)]))[0][0]
            seen = await asyncio.gather(*(until(ws, has_task(task.id), 30) for ws in sockets))
            assert len(seen) == 500
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))
