"""The OpenAPI description is exact: what it allows the server accepts, and the server's
methods, cursors, integers and conflicts are the ones it states."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from taskd import __version__
from taskd.engine.registry import Registry
from taskd.http.app import ROUTES
from taskd.http.openapi import build_spec
from taskd.model import make_spec
from taskd.store import Store
from tests.test_http_support import serve_app

Client = TestClient[Any, Any]
SPEC = build_spec(Registry.from_modules([]), auth_required=False, version=__version__)


async def test_options_and_405_list_exactly_the_paths_methods(store: Store) -> None:
    """OPTIONS /api/tasks/batch answers 204 with Allow: POST (not the GET/DELETE of
    /api/tasks/{task_id}); GET on it is a 405 with the same Allow."""
    async with serve_app(store) as client:
        options = await client.options("/api/tasks/batch")
        assert options.status == 204
        assert options.headers["Allow"] == "POST, OPTIONS"
        refused = await client.get("/api/tasks/batch")
        assert refused.status == 405
        assert refused.headers["Allow"] == "POST, OPTIONS"
        for path, item in SPEC["paths"].items():
            concrete = path.replace("{task_id}", "0" * 32).replace("{name}", "q")
            reply = await client.options(concrete.replace("{name}", "x.js"))
            methods = {m.strip() for m in reply.headers["Allow"].split(",")} - {"OPTIONS"}
            documented = {m.upper() for m in item if m != "parameters"}
            assert methods == documented, path


async def test_integral_float_limits_are_accepted(store: Store, queue: str) -> None:
    """limit=5.0 (an integer to JSON Schema) is a page of 5, in the query and in bulk bodies."""
    await store.submit([make_spec("data_processing", {"records": 1}, queue=queue)])
    async with serve_app(store) as client:
        listed = await client.get(f"/api/tasks?queue={queue}&limit=5.0")
        assert listed.status == 200, await listed.text()
        assert (await client.get("/api/tasks?limit=5.5")).status == 422
        body = {"status": "failed", "dry_run": True, "limit": 283.0}
        bulk = await client.post("/api/tasks/bulk/retry", json=body)
        assert bulk.status == 200, await bulk.text()


async def test_cursors_match_their_declared_pattern(store: Store, queue: str) -> None:
    """next_cursor matches the pattern the description declares, and any token of that
    pattern is a valid position (an empty page, not a 422)."""
    specs = [make_spec("data_processing", {"records": 1}, queue=queue) for _ in range(3)]
    await store.submit(specs)
    (cursor,) = (
        p for p in SPEC["paths"]["/api/tasks"]["get"]["parameters"] if p["name"] == "cursor"
    )
    pattern = re.compile(cursor["schema"]["pattern"])
    async with serve_app(store) as client:
        page = await (await client.get(f"/api/tasks?queue={queue}&limit=2")).json()
        assert pattern.fullmatch(page["next_cursor"])
        rest = await client.get(f"/api/tasks?queue={queue}&cursor={page['next_cursor']}")
        assert len((await rest.json())["tasks"]) == 1
        made_up = await client.get(f"/api/tasks?queue={queue}&cursor=12-3")
        assert made_up.status == 200


async def test_idempotency_key_conflicting_with_unique_key_is_a_described_409(
    store: Store, queue: str
) -> None:
    """Different keys in the header and the body: 409 idempotency_conflict, as documented."""
    body = {"task_type": "data_processing", "queue": queue, "payload": {"records": 1}}
    async with serve_app(store) as client:
        reply = await client.post(
            "/api/tasks", json=body | {"unique_key": "a"}, headers={"Idempotency-Key": "b"}
        )
        assert reply.status == 409
        assert (await reply.json())["error"]["code"] == "idempotency_conflict"
    assert "409" in SPEC["paths"]["/api/tasks"]["post"]["responses"]
    assert (await store.stats(queue))["total"] == 0


def test_payloads_are_one_of_the_types_by_task_type() -> None:
    """TaskCreate is a oneOf of per-type schemas with a task_type discriminator, and each
    type's payload schema is the registry's own (the one that validates)."""
    schemas = SPEC["components"]["schemas"]
    create = schemas["TaskCreate"]
    assert create["discriminator"]["propertyName"] == "task_type"
    registry = Registry.from_modules([])
    assert set(create["discriminator"]["mapping"]) == {t.name for t in registry}
    for task_type in registry:
        variant = schemas[create["discriminator"]["mapping"][task_type.name].rsplit("/", 1)[1]]
        assert variant["properties"]["task_type"] == {"const": task_type.name}
        if task_type.schema:
            assert task_type.schema in variant["properties"]["payload"]["anyOf"]


def test_websocket_is_described_as_a_websocket_not_a_get() -> None:
    """/ws is no REST operation; x-websocket names it, its close codes and message schemas."""
    assert "/ws" not in SPEC["paths"]
    assert SPEC["x-websocket"]["path"] == "/ws"
    assert {"1008", "1013"} <= set(SPEC["x-websocket"]["close_codes"])
    assert {"WsSnapshot", "WsEvents", "WsResumed", "WsStats"} <= set(SPEC["components"]["schemas"])
    assert {p for _, p, _ in ROUTES} - {"/ws"} == set(SPEC["paths"])
