"""The dashboard's server side: the page and its assets, and the endpoints it added
(lease, history, artifacts, Redis facts, bulk actions), on the real app and real Redis."""

from __future__ import annotations

import asyncio
import configparser
import fnmatch
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from taskd.handlers.artifacts import write_artifact
from taskd.http.dashboard import load_assets
from taskd.http.state import STATE
from taskd.model import Status, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.pooltools import running_pool
from tests.test_http_support import registry_with, serve_app

Client = TestClient[Any, Any]
WEB = Path(__file__).resolve().parent.parent / "taskd" / "web"


async def _noop(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {"echo": payload}


async def _boom(ctx: Any, payload: dict[str, Any]) -> None:
    raise RuntimeError("boom")


@pytest.fixture
async def client(store: Store, tmp_path: Path) -> AsyncIterator[Client]:
    """The app with the built-in types plus `noop` and `boom`, no workers."""
    registry = registry_with(noop=_noop, boom=_boom)
    async with serve_app(store, registry=registry, data_dir=str(tmp_path)) as c:
        yield c


async def test_page_is_served_with_strict_security_headers(client: Client) -> None:
    """/ is the dashboard, under a CSP without inline code, unframeable, never sniffed."""
    reply = await client.get("/")
    assert reply.status == 200
    assert reply.content_type == "text/html"
    assert '<script type="module" src="/assets/app.js">' in await reply.text()
    csp = reply.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Referrer-Policy"] == "no-referrer"
    assert reply.headers["Cache-Control"] == "no-cache"


async def test_assets_revalidate_with_their_etag(client: Client) -> None:
    """A repeated request with the ETag gets 304 and no body."""
    first = await client.get("/assets/app.js")
    assert first.status == 200
    assert first.headers["Content-Type"].startswith("text/javascript")
    again = await client.get("/assets/app.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    assert await again.read() == b""


@pytest.mark.parametrize(
    "path",
    [
        "/assets/../setup.cfg",
        "/assets/..%2F..%2Fsetup.cfg",
        "/assets/%2e%2e%2fhttp%2fapp.py",
        "/assets/.hidden.js",
        "/assets/index.html",
        "/assets/dashboard.py",
        "/assets/APP.JS",
    ],
)
async def test_asset_route_serves_nothing_outside_its_table(client: Client, path: str) -> None:
    """Traversal, dot files, the page itself and unknown names are all 404."""
    reply = await client.get(path)
    assert reply.status == 404


def test_every_module_import_names_a_served_asset() -> None:
    """Each relative ES-module import resolves to a file the asset route serves."""
    served = load_assets().files
    for name in served:
        if not name.endswith(".js"):
            continue
        text = (WEB / name).read_text()
        for target in re.findall(r'from "\./([^"]+)"', text):
            assert target in served, (name, target)
    assert {"index.html", "app.js", "app.css", "favicon.svg"} <= set(served)


def test_the_wheel_ships_every_dashboard_file() -> None:
    """setup.cfg's package data covers each file of taskd/web (a non-editable install
    serves the dashboard; the top-level web/ is only a link to this folder)."""
    setup = configparser.ConfigParser()
    setup.read(WEB.parent.parent / "setup.cfg")
    patterns = [p.strip() for p in setup["options.package_data"]["taskd"].split(",")]
    for path in WEB.iterdir():
        assert any(fnmatch.fnmatch(f"web/{path.name}", p) for p in patterns), path.name
    assert (WEB.parent.parent / "web").resolve() == WEB


def test_asset_table_skips_folders_and_unexpected_names(tmp_path: Path) -> None:
    """Only flat files with a known suffix and a plain name are loaded."""
    (tmp_path / "ok.js").write_text("export {};")
    (tmp_path / ".secret.js").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.js").write_text("x")
    assert set(load_assets(tmp_path).files) == {"ok.js"}


async def test_lease_of_a_running_task_names_its_holder(
    client: Client, store: Store, queue: str
) -> None:
    """A processing task's lease: the pool's consumer, a young lease, one delivery."""
    started = asyncio.Event()

    async def slow(ctx: Any, payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(30)

    async with running_pool(store, registry_with(slow=slow), queue, lease_s=5.0) as pool:
        task = (await store.submit([make_spec("slow", queue=queue)]))[0][0]
        await asyncio.wait_for(started.wait(), 10)
        lease = await (await client.get(f"/api/tasks/{task.id}/lease")).json()
        assert lease["held"] is True
        assert lease["holder"] == pool.consumer
        assert lease["holder_alive"] is True
        assert lease["delivery_count"] == 1
        assert 0 <= lease["lease_age_ms"] < 5000
        assert lease["expires_in_ms"] <= lease["lease_s"] * 1000
        await store.cancel(task.id)


async def test_lease_of_a_waiting_task_is_not_held(
    client: Client, store: Store, queue: str
) -> None:
    """A pending task has no holder."""
    task = (await store.submit([make_spec("noop", queue=queue)]))[0][0]
    lease = await (await client.get(f"/api/tasks/{task.id}/lease")).json()
    assert lease == lease | {"held": False, "holder": None, "delivery_count": None}
    missing = await client.get(f"/api/tasks/{'0' * 32}/lease")
    assert missing.status == 404


async def test_history_lists_each_transition_with_attempt_errors(
    client: Client, store: Store, queue: str
) -> None:
    """A task failing twice then failing for good shows every attempt's error in order."""
    async with running_pool(store, registry_with(boom=_boom), queue):
        task = (await store.submit([make_spec("boom", queue=queue, max_retries=1)]))[0][0]

        async def failed() -> bool:
            return (await store.get(task.id)).status == Status.FAILED

        await eventually(failed)
    history = await (await client.get(f"/api/tasks/{task.id}/history")).json()
    kinds = [e["kind"] for e in history["events"]]
    assert kinds[0] == "created"
    assert kinds.count("started") == 2
    assert kinds[-1] == "failed"
    assert "retrying" in kinds
    errors = [e["error"] for e in history["events"] if e["kind"] in ("retrying", "failed")]
    assert all(e and "boom" in e for e in errors)
    assert history["complete"] is True


async def test_history_read_is_bounded_and_says_when_it_is_cut_off(
    store: Store, queue: str
) -> None:
    """Past the scan limit the oldest events are left out, and the reply says so."""
    ((task, _),) = await store.submit([make_spec("noop", queue=queue)])
    await store.submit([make_spec("noop", queue=queue) for _ in range(600)])
    events, complete = await store.task_events(task, max_scan=500)
    assert (events, complete) == ([], False)
    events, complete = await store.task_events(task, max_scan=5000)
    assert [e.kind for e in events] == ["created"]
    assert complete is True


async def test_artifact_downloads_as_a_sandboxed_attachment(client: Client) -> None:
    """A stored artifact comes back as an attachment that cannot run in the page's origin."""
    task_id = "a" * 32
    write_artifact(client.app[STATE].settings, task_id, "report.html", b"<h1>hi</h1>")
    reply = await client.get(f"/api/tasks/{task_id}/artifacts/report.html")
    assert reply.status == 200
    assert await reply.read() == b"<h1>hi</h1>"
    assert reply.headers["Content-Disposition"] == 'attachment; filename="report.html"'
    assert reply.headers["Content-Security-Policy"].startswith("sandbox")
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    missing = await client.get(f"/api/tasks/{task_id}/artifacts/report.csv")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    bad = await client.get(f"/api/tasks/{task_id}/artifacts/.env")
    assert bad.status == 422


async def test_redis_facts_report_memory_keys_and_retention(client: Client, store: Store) -> None:
    """Version, memory in use, taskd's key count and the retention settings."""
    await store.submit([make_spec("noop", queue="dashfacts")])
    facts = await (await client.get("/api/redis")).json()
    assert facts["server"]["version"]
    assert facts["memory"]["used_bytes"] > 0
    assert facts["keys"]["taskd"] >= 1
    assert facts["keys"]["complete"] is True
    assert facts["retention"]["finished_task_s"] == 86400.0
    assert facts["retention"]["events_per_queue"] == store.events_maxlen


async def test_bulk_retry_counts_first_then_retries_only_the_selection(
    client: Client, store: Store, queue: str
) -> None:
    """A dry run counts failed tasks of one type; the run retries those and no others."""
    async with running_pool(store, registry_with(boom=_boom, noop=_noop), queue):
        specs = [make_spec("boom", queue=queue, max_retries=0) for _ in range(3)]
        specs.append(make_spec("noop", queue=queue))
        await store.submit(specs)

        async def settled() -> bool:
            stats = await store.stats(queue)
            return stats["failed"] == 3 and stats["completed"] == 1

        await eventually(settled)
    body = {"status": "failed", "task_type": "boom", "queue": queue}
    dry = await (await client.post("/api/tasks/bulk/retry", json=body | {"dry_run": True})).json()
    assert dry == dry | {"matched": 3, "changed": 0, "more": False, "dry_run": True}
    assert (await store.stats(queue))["failed"] == 3
    done = await (await client.post("/api/tasks/bulk/retry", json=body)).json()
    assert done == done | {"matched": 3, "changed": 3, "skipped": 0, "more": False}
    stats = await store.stats(queue)
    assert stats["failed"] == 0
    assert stats["pending"] == 3
    assert stats["completed"] == 1


async def test_bulk_cancel_without_a_type_counts_from_the_counters(
    client: Client, store: Store, queue: str
) -> None:
    """Cancelling every pending task of a queue: exact count, then all cancelled."""
    await store.submit([make_spec("noop", queue=queue) for _ in range(5)])
    body = {"status": "pending", "queue": queue}
    dry = await (await client.post("/api/tasks/bulk/cancel", json=body | {"dry_run": True})).json()
    assert dry["matched"] == 5
    done = await (await client.post("/api/tasks/bulk/cancel", json=body)).json()
    assert done["changed"] == 5
    assert (await store.stats(queue))["cancelled"] == 5


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("retry", {"status": "pending"}, "status"),
        ("cancel", {"status": "failed"}, "status"),
        ("retry", {"dry_run": "yes"}, "dry_run"),
        ("retry", {"everything": True}, "everything"),
        ("cancel", {"task_type": "bad type!"}, "task_type"),
        ("cancel", {"limit": 0}, "limit"),
        ("retry", [], "body"),
    ],
)
async def test_bulk_rejects_bad_bodies_naming_the_field(
    client: Client, action: str, body: Any, field: str
) -> None:
    """Every invalid bulk body is a 422 whose details name the field."""
    reply = await client.post(f"/api/tasks/bulk/{action}", json=body)
    assert reply.status == 422
    assert (await reply.json())["error"]["details"]["field"] == field


async def test_auth_guards_the_new_endpoints_but_not_the_page(store: Store) -> None:
    """With tokens the API answers 401 without one, while the page itself still loads
    (it shows the login)."""
    async with serve_app(store, auth__tokens="s3cret") as c:
        assert (await c.get("/")).status == 200
        assert (await c.get("/assets/app.js")).status == 200
        assert (await c.get("/api/redis")).status == 401
        assert (await c.post("/api/tasks/bulk/retry", json={"dry_run": True})).status == 401
        ok = await c.get("/api/redis", headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200
