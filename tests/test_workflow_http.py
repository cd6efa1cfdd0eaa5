"""The workflow routes on aiohttp's test server with real Redis and a real pool."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from taskd.store import Store
from taskd.workflow import WorkflowSpec
from tests.conftest import eventually
from tests.pooltools import running_pool
from tests.test_http_support import registry_with, serve_app

Client = TestClient[Any, Any]
DOC = Path(__file__).resolve().parent.parent / "docs" / "workflows.md"


async def _add(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "sum": sum(payload.get("values", []))
        + sum(ctx.parents.get(k, {}).get("sum", 0) for k in ctx.parents)
    }


async def _boom(ctx: Any, payload: dict[str, Any]) -> None:
    raise RuntimeError("boom")


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    """The app with the `add` and `boom` types, no workers."""
    async with serve_app(store, registry=registry_with(add=_add, boom=_boom)) as c:
        yield c


def _wf(queue: str) -> dict[str, Any]:
    return {
        "name": "sums",
        "tasks": [
            {"key": "a", "task_type": "add", "queue": queue, "payload": {"values": [1, 2]}},
            {"key": "b", "task_type": "add", "queue": queue, "payload": {"values": [3]}},
            {
                "key": "total",
                "task_type": "add",
                "queue": queue,
                "depends_on": ["a", "b"],
                "payload": {"values": [{"$result": "a.sum"}]},
            },
        ],
    }


async def test_submit_answers_201_with_roots_pending(client: Client, queue: str) -> None:
    """POST /api/workflows answers 201: roots pending, dependents waiting, counts exact."""
    response = await client.post("/api/workflows", json=_wf(queue))
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["status"] == "running"
    assert {k: t["status"] for k, t in body["tasks"].items()} == {
        "a": "pending",
        "b": "pending",
        "total": "waiting",
    }
    assert (body["counts"]["pending"], body["counts"]["waiting"], body["counts"]["total"]) == (
        2,
        1,
        3,
    )
    task = await (await client.get(f"/api/tasks/{body['tasks']['total']['id']}")).json()
    assert (task["workflow_id"], task["depends_on"]) == (body["id"], ["a", "b"])


@pytest.mark.parametrize(
    ("tasks", "field"),
    [
        ([{"key": "a", "task_type": "add", "depends_on": ["zz"]}], "tasks.a.depends_on"),
        (
            [
                {"key": "a", "task_type": "add", "depends_on": ["b"]},
                {"key": "b", "task_type": "add", "depends_on": ["a"]},
            ],
            "depends_on",
        ),
        ([{"key": "a", "task_type": "add", "priority": 99}], "tasks.a.priority"),
        ([{"key": "a", "task_type": "add", "bogus": 1}], "tasks[0].bogus"),
    ],
)
async def test_bad_workflow_refused_with_422_naming_key(
    client: Client, store: Store, queue: str, tasks: list[dict[str, Any]], field: str
) -> None:
    """Unknown keys, cycles and bad task fields answer 422 naming the field; nothing is
    written."""
    for t in tasks:
        t["queue"] = queue
    response = await client.post("/api/workflows", json={"tasks": tasks})
    assert response.status == 422
    error = (await response.json())["error"]
    assert field in error["details"]["field"]
    assert (await store.stats(queue))["total"] == 0


async def test_workflow_runs_and_reads_completed(client: Client, store: Store, queue: str) -> None:
    """A submitted workflow runs to 'completed', with each result and the list filter."""
    body = await (await client.post("/api/workflows", json=_wf(queue))).json()
    registry = registry_with(add=_add, boom=_boom)

    async def done() -> Any:
        view = await (await client.get(f"/api/workflows/{body['id']}")).json()
        return view if view["status"] == "completed" else None

    async with running_pool(store, registry, queue):
        view = await eventually(done)
    assert view["tasks"]["total"]["result"] == {"sum": 3 + 3 + 3}
    assert view["counts"]["completed"] == 3
    listed = await (await client.get("/api/workflows?status=completed&limit=200")).json()
    assert body["id"] in [w["id"] for w in listed["workflows"]]
    running = await (await client.get("/api/workflows?status=running&limit=200")).json()
    assert body["id"] not in [w["id"] for w in running["workflows"]]


async def test_cancel_then_delete_workflow(client: Client, store: Store, queue: str) -> None:
    """Cancel ends every unfinished task; delete (refused while running) removes all."""
    body = await (await client.post("/api/workflows", json=_wf(queue))).json()
    early = await client.delete(f"/api/workflows/{body['id']}")
    assert early.status == 409
    cancelled = await client.post(f"/api/workflows/{body['id']}/cancel")
    assert cancelled.status == 200
    view = await cancelled.json()
    assert view["status"] == "cancelled"
    assert view["counts"]["cancelled"] == 3
    stats = await store.stats(queue)
    assert (stats["pending"], stats["waiting"], stats["cancelled"]) == (0, 0, 3)
    assert (await client.delete(f"/api/workflows/{body['id']}")).status == 204
    assert (await client.get(f"/api/workflows/{body['id']}")).status == 404
    assert (await store.stats(queue))["total"] == 0


async def test_cancelling_an_ended_workflow_names_it(client: Client, queue: str) -> None:
    """A 409 for a workflow that already ended speaks of the workflow (its id under
    details.workflow_id), not of a task."""
    body = await (await client.post("/api/workflows", json=_wf(queue))).json()
    assert (await client.post(f"/api/workflows/{body['id']}/cancel")).status == 200
    again = await client.post(f"/api/workflows/{body['id']}/cancel")
    assert again.status == 409
    error = (await again.json())["error"]
    assert error["code"] == "conflict"
    assert error["message"] == f"cannot cancel workflow {body['id']}: it is cancelled"
    assert error["details"] == {
        "workflow_id": body["id"],
        "status": "cancelled",
        "action": "cancel",
    }


async def test_listing_cuts_a_large_depends_on(client: Client, queue: str) -> None:
    """A fan-in's long depends_on is left out of listings and snapshots (flagged, like a
    large payload) and shown whole by GET /api/tasks/{id}."""
    tasks: list[dict[str, Any]] = [
        {"key": f"p{i}", "task_type": "add", "queue": queue} for i in range(500)
    ]
    tasks.append(
        {
            "key": "join",
            "task_type": "add",
            "queue": queue,
            "depends_on": [f"p{i}" for i in range(500)],
        }
    )
    body = await (await client.post("/api/workflows", json={"tasks": tasks})).json()
    rows = (await (await client.get(f"/api/tasks?queue={queue}&limit=1000")).json())["tasks"]
    join = next(r for r in rows if r["id"] == body["tasks"]["join"]["id"])
    assert (join["depends_on"], join["depends_on_truncated"]) == (None, True)
    one = next(r for r in rows if r["id"] == body["tasks"]["p1"]["id"])
    assert (one["depends_on"], one["depends_on_truncated"]) == ([], False)
    whole = await (await client.get(f"/api/tasks/{join['id']}")).json()
    assert len(whole["depends_on"]) == 500


async def test_the_curl_example_in_the_docs_is_accepted(client: Client) -> None:
    """docs/workflows.md's curl example is a valid workflow: 201, its root pending and
    its dependents waiting, counts computed from the tasks."""
    text = DOC.read_text()
    example = re.search(r"curl -s -X POST \S+/api/workflows .*?-d '(\{.*?\})'", text, re.S)
    assert example is not None, "no curl example in docs/workflows.md"
    response = await client.post("/api/workflows", json=json.loads(example.group(1)))
    assert response.status == 201, await response.text()
    body = await response.json()
    assert {k: t["status"] for k, t in body["tasks"].items()} == {
        "fetch": "pending",
        "sum": "waiting",
        "report": "waiting",
    }
    assert (body["counts"]["pending"], body["counts"]["waiting"], body["counts"]["total"]) == (
        1,
        2,
        3,
    )
    assert (await client.post(f"/api/workflows/{body['id']}/cancel")).status == 200


class AnswersLate(Store):
    """A store whose workflow submit returns only once a worker took the workflow's
    roots (a stall between writing a workflow and answering for it)."""

    async def submit_workflow(self, spec: WorkflowSpec) -> int:
        now = await super().submit_workflow(spec)
        roots = [t.spec for t in spec.tasks.values() if not t.depends_on]

        async def taken() -> bool:
            found = [await self.get(r.id, r.queue) for r in roots]
            return all(t.status != "pending" for t in found)

        await eventually(taken)
        return now


async def test_submit_answer_shows_the_workflow_as_submitted(redis_url: str, queue: str) -> None:
    """The 201 of POST /api/workflows shows the workflow as written, as the docs say
    (roots pending, the others waiting, status running), even when workers took the
    roots before the answer was built."""
    store = await AnswersLate.connect(redis_url)
    registry = registry_with(add=_add, boom=_boom)
    try:
        async with running_pool(store, registry, queue), serve_app(store, registry=registry) as c:
            response = await c.post("/api/workflows", json=_wf(queue))
            body = await response.json()
    finally:
        await store.close()
    assert response.status == 201
    assert body["status"] == "running"
    assert {k: t["status"] for k, t in body["tasks"].items()} == {
        "a": "pending",
        "b": "pending",
        "total": "waiting",
    }
    counts = body["counts"]
    assert (counts["pending"], counts["waiting"], counts["total"]) == (2, 1, 3)
    assert body["tasks"]["total"]["depends_on"] == ["a", "b"]
