"""The REST API on aiohttp's test server with real Redis: the seed's calls, every route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from taskd.model import Status, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.pooltools import running_pool
from tests.test_http_support import registry_with, serve_app

SEED = {
    "name": "Test Task",
    "task_type": "data_processing",
    "priority": 5,
    "payload": {"records": 1000},
}
Client = TestClient[Any, Any]


async def _noop(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {"echo": payload}


async def _boom(ctx: Any, payload: dict[str, Any]) -> None:
    raise RuntimeError("boom")


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    """The app with the built-in types plus `noop` and `boom`, no workers."""
    async with serve_app(store, registry=registry_with(noop=_noop, boom=_boom)) as c:
        yield c


def task_body(queue: str, **fields: Any) -> dict[str, Any]:
    """A valid submit body for the `noop` type on a test's own queue."""
    return {"task_type": "noop", "queue": queue, "payload": {"n": 1}} | fields


async def test_seed_curl_calls(client: Client) -> None:
    """The seed README's four calls work verbatim, with the trailing slash, no redirect."""
    created = await client.post("/api/tasks/", json=SEED, allow_redirects=False)
    assert created.status == 201, await created.text()
    task = await created.json()
    assert task["name"] == "Test Task"
    assert task["status"] == "pending"
    assert task["priority"] == 5
    assert created.headers["Location"] == f"/api/tasks/{task['id']}"
    one = await client.get(f"/api/tasks/{task['id']}", allow_redirects=False)
    assert one.status == 200
    assert (await one.json())["id"] == task["id"]
    page = await client.get("/api/tasks/?limit=100", allow_redirects=False)
    assert page.status == 200
    assert task["id"] in [t["id"] for t in (await page.json())["tasks"]]
    stats = await client.get("/api/tasks/stats/overview", allow_redirects=False)
    assert stats.status == 200
    body = await stats.json()
    for key in (
        "total",
        "pending",
        "processing",
        "completed",
        "failed",
        "retrying",
        "cancelled",
        "scheduled",
        "throughput",
        "depth_by_priority",
    ):
        assert key in body


async def test_routes_answer_with_and_without_trailing_slash(client: Client, queue: str) -> None:
    """Every /api path answers the same with a trailing slash."""
    a = await client.post("/api/tasks", json=task_body(queue))
    b = await client.post("/api/tasks/", json=task_body(queue))
    assert (a.status, b.status) == (201, 201)
    task_id = (await a.json())["id"]
    for path in (
        f"/api/tasks/{task_id}",
        "/api/workers",
        "/api/task-types",
        "/api/tasks/stats/overview",
    ):
        plain, slashed = await client.get(path), await client.get(path + "/")
        assert plain.status == slashed.status == 200, path


async def test_create_accepts_every_optional_field(client: Client, queue: str) -> None:
    """queue, delay_s, max_retries, timeout_s and unique_key are stored as given."""
    reply = await client.post(
        "/api/tasks",
        json=task_body(
            queue, name="x", priority=9, delay_s=60, max_retries=7, timeout_s=12.5, unique_key="k-1"
        ),
    )
    task = await reply.json()
    assert reply.status == 201
    assert (task["queue"], task["priority"], task["max_retries"], task["timeout_s"]) == (
        queue,
        9,
        7,
        12.5,
    )
    assert task["status"] == "scheduled"
    assert task["run_at"] is not None
    assert task["unique_key"] == "k-1"


async def test_run_at_schedules_the_task(client: Client, queue: str) -> None:
    """An ISO run_at in the future makes the task scheduled at that time."""
    reply = await client.post("/api/tasks", json=task_body(queue, run_at="2999-01-01T00:00:00Z"))
    task = await reply.json()
    assert task["status"] == "scheduled"
    assert task["run_at"] == "2999-01-01T00:00:00.000Z"


async def test_idempotency_key_returns_the_existing_task(client: Client, queue: str) -> None:
    """A second submit with the same Idempotency-Key answers 200 with the first task."""
    headers = {"Idempotency-Key": f"once-{queue}"}
    first = await client.post("/api/tasks", json=task_body(queue), headers=headers)
    again = await client.post("/api/tasks", json=task_body(queue), headers=headers)
    assert (first.status, again.status) == (201, 200)
    assert (await first.json())["id"] == (await again.json())["id"]
    clash = await client.post(
        "/api/tasks", json=task_body(queue, unique_key="other"), headers=headers
    )
    assert clash.status == 409  # documented: the two keys conflict


async def test_batch_submits_all_in_one_request(client: Client, queue: str) -> None:
    """POST /api/tasks/batch creates every task, in order."""
    items = [task_body(queue, name=f"t{i}") for i in range(50)]
    reply = await client.post("/api/tasks/batch", json={"tasks": items})
    body = await reply.json()
    assert reply.status == 201
    assert body["created"] == 50
    assert [t["name"] for t in body["tasks"]] == [f"t{i}" for i in range(50)]
    bare = await client.post("/api/tasks/batch", json=items[:2])
    assert bare.status == 201


async def test_batch_is_all_or_nothing_with_per_item_errors(
    client: Client, store: Store, queue: str
) -> None:
    """One bad item rejects the batch with 422 naming each bad index and field."""
    items = [
        task_body(queue),
        task_body(queue, priority=11),
        task_body(queue),
        {"task_type": "nope", "queue": queue},
    ]
    reply = await client.post("/api/tasks/batch", json={"tasks": items})
    body = await reply.json()
    assert reply.status == 422
    errors = body["error"]["details"]["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, "priority"), (3, "task_type")]
    assert (await store.stats(queue))["total"] == 0


async def test_batch_limit_is_1000(client: Client, queue: str) -> None:
    """More than 1,000 tasks in a batch is refused."""
    reply = await client.post("/api/tasks/batch", json=[task_body(queue)] * 1001)
    assert reply.status == 422
    assert (await reply.json())["error"]["details"]["field"] == "tasks"


async def test_list_filters_and_pages_with_a_cursor(client: Client, queue: str) -> None:
    """Filters by status, task_type, queue and name; pages newest first without repeats."""
    names = [f"alpha-{i}" for i in range(7)] + ["beta"]
    await client.post("/api/tasks/batch", json=[task_body(queue, name=n) for n in names])
    await client.post("/api/tasks", json=task_body(queue, name="later", delay_s=3600))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"queue": queue, "q": "ALPHA", "limit": "3"} | (
            {"cursor": cursor} if cursor else {}
        )
        page = await (await client.get("/api/tasks", params=params)).json()
        seen += [t["name"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"alpha-{i}" for i in reversed(range(7))]
    scheduled = await (
        await client.get("/api/tasks", params={"queue": queue, "status": "scheduled,failed"})
    ).json()
    assert [t["name"] for t in scheduled["tasks"]] == ["later"]
    typed = await (
        await client.get("/api/tasks", params={"queue": queue, "task_type": "boom"})
    ).json()
    assert typed == {"tasks": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"cursor": "!!!"}, "cursor"),
        ({"queue": "no spaces"}, "queue"),
        ({"q": "x" * 201}, "q"),
    ],
)
async def test_list_rejects_bad_parameters(
    client: Client, params: dict[str, str], field: str
) -> None:
    """A bad query parameter is a 422 that names it."""
    reply = await client.get("/api/tasks", params=params)
    assert reply.status == 422
    assert (await reply.json())["error"]["details"]["field"] == field


async def test_overview_reports_throughput_and_depth(
    client: Client, store: Store, queue: str
) -> None:
    """Depth per priority counts ready tasks; throughput rises once tasks complete."""
    await client.post("/api/tasks/batch", json=[task_body(queue, priority=p) for p in (2, 9, 9)])
    overview = await (await client.get("/api/tasks/stats/overview")).json()
    assert overview["depth_by_priority"]["9"] >= 2
    assert overview["depth_by_priority"]["2"] >= 1
    async with running_pool(store, registry_with(noop=_noop), queue):

        async def done() -> bool:
            return (await store.stats(queue))["completed"] == 3

        await eventually(done)

    async def rising() -> bool:
        body = await (await client.get("/api/tasks/stats/overview")).json()
        return bool(body["throughput"]["completed_per_s"] > 0)

    await eventually(rising, timeout_s=5, interval_s=0.3)


async def test_cancel_retry_and_delete(client: Client, queue: str) -> None:
    """Cancel a pending task, retry it, cancel again and delete it; wrong states are 409."""
    task = await (await client.post("/api/tasks", json=task_body(queue))).json()
    url = f"/api/tasks/{task['id']}"
    busy = await client.delete(url)
    assert busy.status == 409
    assert "pending" in (await busy.json())["error"]["message"]
    assert (await client.post(f"{url}/retry")).status == 409
    cancelled = await client.post(f"{url}/cancel")
    assert cancelled.status == 200
    assert (await cancelled.json())["status"] == "cancelled"
    assert (await client.post(f"{url}/cancel")).status == 409
    retried = await client.post(f"{url}/retry")
    assert retried.status == 200
    assert (await retried.json())["status"] == "pending"
    await client.post(f"{url}/cancel")
    deleted = await client.delete(url)
    assert deleted.status == 204
    assert (await client.get(url)).status == 404
    assert (await client.delete(url)).status == 404


async def test_cancelling_a_running_task_answers_202(
    client: Client, store: Store, queue: str
) -> None:
    """A processing task is asked to stop (202) and ends cancelled."""
    started = asyncio.Event()

    async def slow(ctx: Any, payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(30)

    async with running_pool(store, registry_with(slow=slow), queue):
        task = (await store.submit([make_spec("slow", queue=queue)]))[0][0]
        await asyncio.wait_for(started.wait(), 10)
        reply = await client.post(f"/api/tasks/{task.id}/cancel")
        assert reply.status == 202
        assert (await reply.json())["cancel_requested"] is True

        async def cancelled() -> bool:
            return (await store.get(task.id)).status == Status.CANCELLED

        await eventually(cancelled)


async def test_delete_removes_a_failed_task_and_its_counts(
    client: Client, store: Store, queue: str
) -> None:
    """Deleting a failed task drops it from the list and the status counts."""
    async with running_pool(store, registry_with(boom=_boom), queue):
        task = (await store.submit([make_spec("boom", queue=queue, max_retries=0)]))[0][0]

        async def failed() -> bool:
            return (await store.get(task.id)).status == Status.FAILED

        await eventually(failed)
    assert (await store.stats(queue))["failed"] == 1
    assert (await client.delete(f"/api/tasks/{task.id}")).status == 204
    counts = await store.stats(queue)
    assert (counts["failed"], counts["total"]) == (0, 0)


async def test_workers_and_task_types(client: Client, store: Store, queue: str) -> None:
    """/api/workers lists live consumers; /api/task-types lists types with examples."""
    async with running_pool(store, registry_with(noop=_noop), queue) as pool:

        async def listed() -> list[dict[str, Any]]:
            body = await (await client.get("/api/workers")).json()
            return [w for w in body["workers"] if w["consumer"] == pool.consumer]

        (worker,) = await eventually(listed)
        assert worker["held"] == 0
        assert worker["heartbeat_at"].endswith("Z")
    types = {
        t["name"]: t for t in (await (await client.get("/api/task-types")).json())["task_types"]
    }
    assert {"email", "data_processing", "noop"} <= set(types)
    assert types["noop"]["example"] == {"n": 1}
    assert types["noop"]["description"]


async def test_task_type_descriptions_are_plain_text(client: Client) -> None:
    """/api/task-types shows descriptions without reStructuredText markup (``x``, `x`)."""
    body = await (await client.get("/api/task-types")).json()
    descriptions = {t["name"]: t["description"] for t in body["task_types"]}
    assert all("`" not in text for text in descriptions.values()), descriptions
    assert "(recipient or to, subject, body and/or html)" in descriptions["email"]


async def test_malformed_json_is_400(client: Client) -> None:
    """A body that is not JSON is a 400 with the error shape."""
    for body in (b"{bad", b"", b"\xff\xfe", b"[1,"):
        reply = await client.post(
            "/api/tasks", data=body, headers={"Content-Type": "application/json"}
        )
        assert reply.status == 400, body
        assert (await reply.json())["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task_type": "nope"}, "task_type"),
        ({"task_type": "noop", "priority": 0}, "priority"),
        ({"task_type": "noop", "priority": "5"}, "priority"),
        ({"task_type": "noop", "payload": [1]}, "payload"),
        ({"task_type": "noop", "queue": "bad queue"}, "queue"),
        ({"task_type": "noop", "delay_s": -1}, "delay_s"),
        ({"task_type": "noop", "run_at": "tomorrow"}, "run_at"),
        ({"task_type": "noop", "delay_s": 1, "run_at": "2999-01-01T00:00:00Z"}, "run_at"),
        ({"task_type": "noop", "timeout_s": 0}, "timeout_s"),
        ({"task_type": "noop", "max_retries": 1001}, "max_retries"),
        ({"task_type": "noop", "name": ""}, "name"),
        ({"task_type": "noop", "colour": "red"}, "colour"),
        ([], "body"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(
    client: Client, body: Any, field: str
) -> None:
    """Wrong types, ranges and unknown task types answer 422 with details.field."""
    reply = await client.post("/api/tasks", json=body)
    assert reply.status == 422
    error = (await reply.json())["error"]
    assert error["code"] == "validation"
    assert error["details"]["field"] == field


async def test_a_name_with_a_trailing_newline_is_refused_and_nothing_created(
    client: Client, store: Store
) -> None:
    """A queue, task type or name check holds to the end of the text: 'default\\n' is not
    the name 'default' (a `$` anchor also matches before a final newline, which let such a
    queue be created)."""
    before = (await store.stats())["total"]
    for body, field in (
        ({"task_type": "noop", "queue": "default\n"}, "queue"),
        ({"task_type": "noop\n"}, "task_type"),
    ):
        reply = await client.post("/api/tasks", json=body)
        assert reply.status == 422, await reply.text()
        assert (await reply.json())["error"]["details"]["field"] == field
    listed = await client.get("/api/tasks", params={"queue": "default\n"})
    assert listed.status == 422
    assert (await store.stats())["total"] == before
    assert "default\n" not in await store.queues()


async def test_list_refuses_a_task_type_no_task_can_have(client: Client) -> None:
    """?task_type= that is not a task type name ('x y') is a 422 naming it, as a bad
    ?queue= is, not an empty page that hides the typo; empty means any type."""
    reply = await client.get("/api/tasks", params={"task_type": "x y"})
    assert reply.status == 422
    assert (await reply.json())["error"]["details"]["field"] == "task_type"
    assert (await client.get("/api/tasks", params={"task_type": ""})).status == 200
    assert (await client.get("/api/tasks", params={"task_type": "email"})).status == 200


async def test_unknown_payload_key_is_422_with_a_hint(client: Client) -> None:
    """A misspelt payload key of a built-in type is a 422 naming the key it resembles."""
    body = {"task_type": "data_processing", "payload": {"records": 5, "operation": "sum"}}
    reply = await client.post("/api/tasks", json=body)
    assert reply.status == 422
    error = (await reply.json())["error"]
    assert error["details"]["field"] == "payload.operation"
    assert "did you mean 'operations'?" in error["message"]


async def test_body_over_the_limit_is_413(store: Store) -> None:
    """A body larger than server.max_body_bytes is refused with 413 JSON."""
    async with serve_app(store, server__max_body_bytes="1000") as small:
        reply = await small.post("/api/tasks", data=b"{" + b" " * 2000 + b"}")
        assert reply.status == 413
        assert (await reply.json())["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_method_are_json(client: Client) -> None:
    """Unknown routes are 404 and wrong methods 405 (with Allow), both JSON."""
    missing = await client.get("/api/nothing-here")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    wrong = await client.put("/api/tasks")
    assert wrong.status == 405
    assert "POST" in wrong.headers["Allow"]
    assert (await wrong.json())["error"]["code"] == "method_not_allowed"


async def test_unknown_task_is_404(client: Client) -> None:
    """A well-formed or malformed id that names no task is a 404."""
    for task_id in ("0" * 32, "not-an-id", "%00"):
        reply = await client.get(f"/api/tasks/{task_id}")
        assert reply.status == 404
        assert (await reply.json())["error"]["code"] == "not_found"


async def test_request_id_is_echoed(client: Client) -> None:
    """A caller's X-Request-ID comes back; without one the server makes one."""
    mine = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert mine.headers["X-Request-ID"] == "abc-123"
    made = await client.get("/healthz")
    assert len(made.headers["X-Request-ID"]) == 32
