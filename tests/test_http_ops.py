"""Health, readiness, metrics, the OpenAPI description and docs page, and Redis outages."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from taskd.embedded import EmbeddedRedis
from taskd.engine.pool import PoolConfig, WorkerPool
from taskd.http.app import ROUTES
from taskd.model import Status
from taskd.store import Store
from tests.conftest import eventually
from tests.pooltools import running_pool
from tests.procs import free_port
from tests.test_http_support import registry_with, serve_app

Client = TestClient[Any, Any]


async def _noop(ctx: Any, payload: dict[str, Any]) -> str:
    return "ok"


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    """The app without a worker pool."""
    async with serve_app(store, registry=registry_with(noop=_noop)) as c:
        yield c


async def test_healthz_and_readyz(client: Client) -> None:
    """Both answer 200 while Redis is reachable; readyz reports the round trip."""
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 200
    assert body["problems"] == []
    assert body["redis_latency_ms"] >= 0


async def test_readyz_is_503_until_workers_run(store: Store) -> None:
    """A pool that has not started makes the node not ready."""
    pool = WorkerPool(store, registry_with(), "test:notstarted:0", PoolConfig())
    async with serve_app(store, pool=pool) as c:
        reply = await c.get("/readyz")
        assert reply.status == 503
        assert "worker pool not running" in (await reply.json())["problems"]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_in_prometheus_format(store: Store, queue: str) -> None:
    """Status counts, queue depth, per-type counters, durations, clients and Redis latency."""
    async with (
        running_pool(store, registry_with(noop=_noop), queue) as pool,
        serve_app(store, registry=registry_with(noop=_noop), pool=pool) as c,
    ):
        reply = await c.post("/api/tasks", json={"task_type": "noop", "queue": queue})
        task_id = (await reply.json())["id"]

        async def done() -> bool:
            return (await store.get(task_id)).status == Status.COMPLETED

        await eventually(done)
        async with c.ws_connect("/ws") as ws:
            await ws.receive(timeout=10)

            async def scraped() -> dict[Any, float] | None:
                text = await (await c.get("/metrics")).text()
                found = _samples(text)
                counted = found.get(("taskd_tasks_completed_total", (("task_type", "noop"),)))
                return found if counted == 1 else None

            samples = await eventually(scraped)
            assert samples[("taskd_websocket_clients", ())] == 1
        scrape = await c.get("/metrics")
    assert scrape.headers["Content-Type"].startswith("text/plain")
    assert samples[("taskd_tasks_submitted_total", (("task_type", "noop"),))] == 1
    assert (
        samples[
            ("taskd_task_duration_seconds_count", (("outcome", "completed"), ("task_type", "noop")))
        ]
        == 1
    )
    assert samples[("taskd_tasks", (("status", "completed"),))] >= 1
    assert ("taskd_queue_depth", (("priority", "10"), ("queue", queue))) in samples
    assert samples[("taskd_redis_roundtrip_seconds_count", ())] >= 1


async def test_openapi_documents_every_route(client: Client) -> None:
    """Each route of the table is described (/ws as x-websocket, not as a REST operation),
    and the description names nothing else."""
    spec = await (await client.get("/api/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    documented = {
        (m.upper(), p) for p, item in spec["paths"].items() for m in item if m != "parameters"
    }
    assert documented == {(method, path) for method, path, _ in ROUTES if path != "/ws"}
    assert spec["x-websocket"]["path"] == "/ws"
    refs = set(re.findall(r'"#/components/(?:schemas|responses)/([\w.-]+)"', json.dumps(spec)))
    known = set(spec["components"]["schemas"]) | set(spec["components"]["responses"])
    assert refs <= known
    types = spec["components"]["schemas"]["TaskCreate"]["discriminator"]["mapping"]
    assert {"email", "noop"} <= set(types)


async def test_docs_page_is_self_contained(client: Client) -> None:
    """/docs is the interactive reference, and every file it names is on this server."""
    reply = await client.get("/docs")
    html = await reply.text()
    assert reply.status == 200
    assert reply.content_type == "text/html"
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/docs/swagger-ui-bundle.js" in sources
    for source in sources:
        assert source.startswith("/"), source
        assert not source.startswith("//"), source
        assert (await client.get(source)).status == 200, source


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis this test may stop, freeze and restart (on the same port)."""
    server = EmbeddedRedis(tmp_path / "r", unix_socket=False, appendonly=False, port=free_port())
    await server.start()
    yield server
    if server.pid is not None:
        os.kill(server.pid, signal.SIGCONT)
    await server.stop()


async def _timed(coro: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = await coro
    return result, time.monotonic() - started


async def test_redis_down_is_503_then_recovers(own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    """Stopped Redis: JSON 503 with Retry-After at once; when it returns, so does the API and
    the event stream."""
    port = int(own_redis.url.rsplit(":", 1)[1])
    store = await Store.connect(own_redis.url)
    try:
        async with (
            serve_app(store, registry=registry_with(noop=_noop)) as c,
            c.ws_connect("/ws") as ws,
        ):
            assert (await ws.receive(timeout=10)).type is WSMsgType.TEXT
            await own_redis.stop()
            for method, path in (
                ("GET", "/api/tasks"),
                ("POST", "/api/tasks"),
                ("GET", "/api/tasks/stats/overview"),
            ):
                reply, took = await _timed(c.request(method, path, json={"task_type": "noop"}))
                assert reply.status == 503, path
                assert took < 1.5, (path, took)
                assert reply.headers["Retry-After"] == "1"
                assert (await reply.json())["error"]["code"] == "redis_unavailable"
            assert (await c.get("/readyz")).status == 503
            restarted = EmbeddedRedis(
                tmp_path / "r", unix_socket=False, appendonly=False, port=port
            )
            await restarted.start()
            try:

                async def back() -> bool:
                    return (await c.get("/api/tasks")).status == 200

                await eventually(back)
                created = await c.post("/api/tasks", json={"task_type": "noop"})
                task_id = (await created.json())["id"]
                deadline = time.monotonic() + 10
                while True:
                    msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                    data = json.loads(msg.data)
                    if data["type"] in ("events", "snapshot") and task_id in json.dumps(data):
                        break
            finally:
                await restarted.stop()
    finally:
        await store.close()


async def test_frozen_redis_is_503_within_about_a_second(own_redis: EmbeddedRedis) -> None:
    """A Redis that accepts but never answers (SIGSTOP) gives 503 at the deadline, no hang."""
    store = await Store.connect(own_redis.url)
    try:
        async with serve_app(store, registry=registry_with(noop=_noop)) as c:
            assert own_redis.pid is not None
            os.kill(own_redis.pid, signal.SIGSTOP)
            try:
                reply, took = await _timed(c.get("/api/tasks/stats/overview"))
                assert reply.status == 503
                assert took < 2.0
            finally:
                os.kill(own_redis.pid, signal.SIGCONT)

            async def back() -> bool:
                return (await c.get("/api/tasks")).status == 200

            await eventually(back)
    finally:
        await store.close()


async def test_no_unhandled_exception_becomes_a_traceback(client: Client) -> None:
    """Odd but well-formed requests get 4xx JSON, never 500."""
    odd = [
        ("GET", "/api/tasks?limit=%FF"),
        ("GET", "/api/tasks?cursor=" + "A" * 5000),
        ("POST", "/api/tasks/batch"),
        ("GET", "/api/tasks/" + "a" * 5000),
        ("DELETE", "/api/tasks/%2e%2e"),
        ("GET", "/ws?since=-"),
        ("POST", "/api/tasks"),
    ]
    for method, path in odd:
        reply = await client.request(method, path, data=b'{"task_type": 1e999}')
        assert 400 <= reply.status < 500, (method, path, reply.status)
        assert "error" in await reply.json()
