"""Bearer tokens, read-only tokens, origins, CORS and the write rate limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from taskd.config import AuthSettings
from taskd.http.guard import Access, Auth, RateLimiter, origin_allowed
from taskd.store import Store
from tests.test_http_support import serve_app

Client = TestClient[Any, Any]
FULL = {"Authorization": "Bearer full-1"}
READ = {"Authorization": "Bearer read-1"}
BODY = {"task_type": "email", "payload": {"to": "a@example.com", "subject": "hi"}, "queue": "authq"}


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    """An app that needs tokens: two full ones and a read-only one."""
    async with serve_app(store, auth__tokens="full-1,full-2", auth__read_tokens="read-1") as c:
        yield c


async def test_api_without_a_token_is_401(client: Client) -> None:
    """Every /api route needs a bearer token; the answer says how to authenticate."""
    for path in ("/api/tasks", "/api/tasks/stats/overview", "/api/workers", "/api/openapi.json"):
        reply = await client.get(path)
        assert reply.status == 401, path
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await reply.json())["error"]["code"] == "unauthorized"


async def test_wrong_token_is_401_and_right_ones_pass(client: Client) -> None:
    """An unknown token is refused; each configured token works."""
    assert (await client.get("/api/tasks", headers={"Authorization": "Bearer nope"})).status == 401
    assert (await client.get("/api/tasks", headers={"Authorization": "Basic full-1"})).status == 401
    for token in ("full-1", "full-2", "read-1"):
        reply = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
        assert reply.status == 200, token


async def test_read_token_cannot_write(client: Client) -> None:
    """A read-only token gets 403 on writes; a full token may write."""
    refused = await client.post("/api/tasks", json=BODY, headers=READ)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "forbidden"
    assert (await client.post("/api/tasks", json=BODY, headers=FULL)).status == 201


async def test_health_docs_and_metrics_stay_open(client: Client) -> None:
    """Probes, docs and metrics need no token (they change nothing)."""
    for path in ("/healthz", "/readyz", "/docs", "/metrics"):
        assert (await client.get(path)).status == 200, path


async def test_anonymous_may_only_read_when_allowed(store: Store) -> None:
    """With auth.allow_anonymous, no token may read but not write."""
    async with serve_app(store, auth__tokens="full-1", auth__allow_anonymous="true") as c:
        assert (await c.get("/api/tasks")).status == 200
        assert (await c.post("/api/tasks", json=BODY)).status == 401
        assert (await c.post("/api/tasks", json=BODY, headers=FULL)).status == 201


async def _first(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await ws.receive(timeout=10)
    return json.loads(msg.data) if msg.type is WSMsgType.TEXT else msg


async def test_websocket_takes_the_token_three_ways(client: Client) -> None:
    """Header, ?token= or a first {"type": "auth"} message; each gets the snapshot."""
    async with client.ws_connect("/ws", headers=READ) as ws:
        assert (await _first(ws))["type"] == "snapshot"
    async with client.ws_connect("/ws", params={"token": "full-2"}) as ws:
        assert (await _first(ws))["type"] == "snapshot"
    async with client.ws_connect("/ws") as ws:
        await ws.send_str(json.dumps({"type": "auth", "token": "full-1"}))
        assert (await _first(ws))["type"] == "snapshot"


async def test_websocket_refuses_bad_tokens(client: Client) -> None:
    """A wrong ?token is a 401 before the upgrade; a wrong first message closes with 1008."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/ws", params={"token": "nope"})
    assert caught.value.status == 401
    async with client.ws_connect("/ws") as ws:
        await ws.send_str(json.dumps({"type": "auth", "token": "nope"}))
        msg = await ws.receive(timeout=10)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == 1008


async def test_foreign_origin_is_rejected(store: Store) -> None:
    """Browsers from other origins cannot open the socket or write; listed ones can."""
    async with serve_app(store, server__allowed_origins="https://ops.example.com") as c:
        evil = {"Origin": "https://evil.example.com"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await c.ws_connect("/ws", headers=evil)
        assert caught.value.status == 403
        assert (await c.post("/api/tasks", json=BODY, headers=evil)).status == 403
        read = await c.get("/api/tasks", headers=evil)
        assert read.status == 200
        assert "Access-Control-Allow-Origin" not in read.headers
        same = {"Origin": f"http://127.0.0.1:{c.port}"}
        async with c.ws_connect("/ws", headers=same) as ws:
            assert (await _first(ws))["type"] == "snapshot"
        listed = {"Origin": "https://ops.example.com"}
        async with c.ws_connect("/ws", headers=listed) as ws:
            assert (await _first(ws))["type"] == "snapshot"
        allowed = await c.post("/api/tasks", json=BODY, headers=listed)
        assert allowed.status == 201
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"


async def test_cors_preflight_for_a_listed_origin(store: Store) -> None:
    """OPTIONS from a listed origin gets the CORS headers without a token."""
    async with serve_app(
        store, server__allowed_origins="https://ops.example.com", auth__tokens="full-1"
    ) as c:
        reply = await c.options(
            "/api/tasks",
            headers={
                "Origin": "https://ops.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert reply.status == 204
        assert "Authorization" in reply.headers["Access-Control-Allow-Headers"]


async def test_writes_are_rate_limited_per_client(store: Store) -> None:
    """Beyond server.rate_limit_per_s writes answer 429 with Retry-After; reads are free."""
    async with serve_app(store, server__rate_limit_per_s="2") as c:
        statuses = [(await c.post("/api/tasks", json=BODY)).status for _ in range(3)]
        assert statuses == [201, 201, 429]
        limited = await c.post("/api/tasks", json=BODY)
        assert limited.status == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert (await limited.json())["error"]["code"] == "rate_limited"
        assert all([(await c.get("/api/tasks?limit=1")).status == 200 for _ in range(5)])


def test_token_comparison_grants_the_right_access() -> None:
    """Auth maps tokens to full, read or nothing; no tokens configured means open."""
    auth = Auth(AuthSettings(tokens=("a",), read_tokens=("r",)))
    assert [auth.check(t) for t in ("a", "r", "x", None)] == [
        Access.FULL,
        Access.READ,
        None,
        Access.NONE,
    ]
    assert Auth(AuthSettings()).check(None) is Access.FULL


def test_rate_limiter_refills_over_time() -> None:
    """A bucket refills at the configured rate and evicts the oldest clients past its cap."""
    now = [0.0]
    limiter = RateLimiter(1.0, max_clients=2, clock=lambda: now[0])
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    now[0] += 1.0
    assert limiter.take("a") == 0.0
    limiter.take("b")
    limiter.take("c")
    assert len(limiter._buckets) == 2


def test_origin_rules() -> None:
    """Same host:port (any scheme) or a listed origin passes; no Origin header passes."""
    assert origin_allowed(None, "h:1", ())
    assert origin_allowed("https://h:1", "h:1", ())
    assert not origin_allowed("http://h:2", "h:1", ())
    assert origin_allowed("http://x", "h:1", ("http://x",))
    assert origin_allowed("http://x", "h:1", ("*",))


async def test_random_bearer_values_do_not_escape_the_rate_limit(store: Store) -> None:
    """With no tokens configured, the write limit keys on the peer address, not on the
    unverified Authorization value: a fresh value per request still hits 429."""
    async with serve_app(store, server__rate_limit_per_s="2") as c:
        statuses = []
        for n in range(10):
            reply = await c.post(
                "/api/tasks", json=BODY, headers={"Authorization": f"Bearer random-{n}"}
            )
            statuses.append(reply.status)
        assert 429 in statuses


async def test_wrong_tokens_are_throttled_per_address(client: Client) -> None:
    """After a burst of wrong tokens an address gets 429 (with Retry-After), even for a
    right token, so tokens cannot be guessed at thousands per second."""
    statuses = []
    for n in range(60):
        reply = await client.get("/api/tasks", headers={"Authorization": f"Bearer guess-{n}"})
        statuses.append(reply.status)
    assert statuses[0] == 401
    assert statuses[-1] == 429
    throttled = await client.get("/api/tasks", headers=FULL)
    assert throttled.status == 429
    assert int(throttled.headers["Retry-After"]) >= 1
