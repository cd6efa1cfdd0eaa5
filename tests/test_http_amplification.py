"""Memory amplification: listings and snapshots carry no big bodies, WebSocket clients and
the bytes queued to them are capped, so a read-only client cannot balloon the server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from taskd.engine.relay import RelayConfig
from taskd.http.shapes import ROW_BODY_BYTES
from taskd.http.state import SERVICES
from taskd.model import make_spec
from taskd.store import Store
from tests.test_http_support import registry_with, serve_app
from tests.test_http_ws import _noop, _stalled_socket, receive

# Inline records of about 64 KiB (built-in payloads refuse unknown keys).
BIG_RECORDS = [{"note": "x" * 60} for _ in range(1000)]


async def test_list_rows_leave_out_big_payloads_the_task_has_them(store: Store, queue: str) -> None:
    """A 64 KiB payload is null with payload_truncated in a listing, whole in GET by id."""
    async with serve_app(store) as client:
        body = {"task_type": "data_processing", "queue": queue, "payload": {"records": BIG_RECORDS}}
        created = await client.post("/api/tasks", json=body)
        small = await client.post(
            "/api/tasks",
            json={"task_type": "data_processing", "queue": queue, "payload": {"records": 2}},
        )
        assert created.status == small.status == 201, await created.text()
        big_id, small_id = (await created.json())["id"], (await small.json())["id"]
        listed = await client.get(f"/api/tasks?queue={queue}&limit=1000")
        rows = {r["id"]: r for r in (await listed.json())["tasks"]}
        assert rows[big_id]["payload"] is None
        assert rows[big_id]["payload_truncated"] is True
        assert rows[small_id]["payload"] == {"records": 2}
        assert rows[small_id]["payload_truncated"] is False
        full = await (await client.get(f"/api/tasks/{big_id}")).json()
        assert full["payload"]["records"] == BIG_RECORDS


async def test_listing_bodies_stay_within_the_budget(store: Store, queue: str) -> None:
    """Many payloads just under the row limit still give a bounded response."""
    payload = {"records": 1, "note": "y" * (ROW_BODY_BYTES - 100)}
    specs = [make_spec("data_processing", payload, queue=queue) for _ in range(1000)]
    await store.submit(specs)
    async with serve_app(store) as client:
        reply = await client.get(f"/api/tasks?queue={queue}&limit=1000")
        raw = await reply.read()
        rows = (await reply.json())["tasks"]
        assert len(rows) == 1000
        assert any(r["payload_truncated"] for r in rows)
        assert len(raw) < 1000 * 1024  # 1,000 full payloads would be ~1 MB more


async def test_snapshot_rows_leave_out_big_payloads(store: Store, queue: str) -> None:
    """The WebSocket snapshot sends rows without big bodies (each client buffers a copy)."""
    await store.submit([make_spec("data_processing", {"records": BIG_RECORDS}, queue=queue)])
    async with serve_app(store) as client, client.ws_connect("/ws") as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        row = next(t for t in snapshot["tasks"] if t["queue"] == queue)
        assert row["payload"] is None
        assert row["payload_truncated"] is True


async def test_websocket_clients_beyond_the_cap_get_503(store: Store) -> None:
    """With server.max_ws_clients = 2 a third client is refused with a JSON 503."""
    async with serve_app(store, server__max_ws_clients="2") as client:
        first = await client.ws_connect("/ws")
        second = await client.ws_connect("/ws")
        try:
            await receive(first)
            await receive(second)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws")
            assert refused.value.status == 503
        finally:
            await first.close()
            await second.close()
        third = await client.ws_connect("/ws")  # a slot is free again
        assert (await receive(third))["type"] == "snapshot"
        await third.close()


async def test_client_that_never_reads_is_dropped_at_the_queued_bytes_budget(
    store: Store, queue: str
) -> None:
    """Past server.ws_queued_bytes a client with unsent data is closed, even while its relay
    buffer has room; a reading client keeps its stream."""
    config = RelayConfig(
        flush_interval_s=0.02, stats_interval_s=0.5, block_ms=50, subscriber_limit=1_000_000
    )
    async with serve_app(
        store,
        registry=registry_with(noop=_noop),
        relay_config=config,
        server__ws_queued_bytes="1",
    ) as client:
        hub = client.app[SERVICES].hub
        assert client.port is not None
        stalled = _stalled_socket(client.port)
        try:
            async with client.ws_connect("/ws") as ws:
                await receive(ws)
                deadline = time.monotonic() + 30
                while hub.dropped == 0:
                    assert time.monotonic() < deadline, "stalled client never dropped"
                    await store.submit(
                        [make_spec("noop", queue=queue, name="x" * 200) for _ in range(200)]
                    )
                    await _drain(ws)
                assert len(hub.clients) == 1
        finally:
            stalled.close()


async def _drain(ws: Any) -> None:
    """Read what has arrived so far (a reading client never has data queued for long)."""
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), 0.2)
        except TimeoutError:
            return
        assert msg.type is WSMsgType.TEXT
