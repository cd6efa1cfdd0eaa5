"""Node roles as real processes: an API-only `taskd serve --workers 0` in front of two
`taskd worker` nodes on one real Redis (a database of its own, so the worker listing
holds only this module's nodes)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from taskd.model import Status
from taskd.store import Store
from tests.conftest import CLUSTER, eventually
from tests.dashboard_support import MARKS as BROWSER_MARKS
from tests.dashboard_support import expect, fresh_db, launch, open_page
from tests.procs import REPO, DaemonProcess

pytestmark = pytest.mark.slow
DB = 13  # (9-12 belong to the dashboard tests)
# Leases short enough that a killed worker's tasks come back within seconds.
FAST = {"TASKD_LEASE_S": "2", "TASKD_SWEEP_INTERVAL_S": "0.2", "TASKD_RATE_LIMIT_PER_S": "0"}
HANDLERS = "tests.daemon_handlers"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Fleet:
    """One API-only node and the worker nodes behind it, all on ``url``."""

    url: str
    queue: str
    api: DaemonProcess
    workers: list[DaemonProcess]
    root: Path

    def start_worker(self, name: str, queue: str) -> DaemonProcess:
        """Another worker node with the test handlers, consuming ``queue``."""
        return DaemonProcess(
            self.root / name,
            *("--redis-url", self.url, "--handlers", HANDLERS, "--queues", queue),
            *("--workers", "4"),
            env=FAST,
            command="worker",
        )


@pytest.fixture(scope="module")
async def fleet(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    """An API-only node (no handler modules) and two ready worker nodes."""
    url = redis_url if CLUSTER else await fresh_db(redis_url, DB)
    root = tmp_path_factory.mktemp("roles")
    queue = f"r{uuid.uuid4().hex[:10]}"
    api = DaemonProcess(root / "api", "--redis-url", url, "--workers", "0", env=FAST)
    fleet = Fleet(url, queue, api, [], root)
    try:
        fleet.workers = [fleet.start_worker(f"w{i}", queue) for i in range(2)]
        await asyncio.gather(api.ready(), *(w.ready() for w in fleet.workers))
        yield fleet
    finally:
        for daemon in (api, *fleet.workers):
            daemon.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


async def submit(
    http: aiohttp.ClientSession, base: str, task_type: str, queue: str, **payload: Any
) -> tuple[int, dict[str, Any]]:
    """POST /api/tasks; the status and the JSON answer."""
    body = {"task_type": task_type, "queue": queue, "payload": payload, "max_retries": 3}
    async with http.post(f"{base}/api/tasks", json=body) as reply:
        return reply.status, await reply.json()


async def finished(store: Store, queue: str, ids: list[str]) -> list[Any] | None:
    """The tasks once every one of them completed, else None."""
    tasks = await store.get_many([(queue, i) for i in ids])
    done = all(t is not None and t.status == Status.COMPLETED for t in tasks)
    return tasks if done else None


async def test_api_node_tasks_all_run_on_worker_nodes(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    """Tasks submitted through the API-only node all run, and only on the worker nodes."""
    ids = []
    for _ in range(24):
        status, task = await submit(http, fleet.api.url, "sleepy", fleet.queue, s=0.05)
        assert status == 201, task
        ids.append(task["id"])
    store = await Store.connect(fleet.url)
    try:
        tasks = await eventually(lambda: finished(store, fleet.queue, ids), timeout_s=30)
    finally:
        await store.close()
    worker_pids = {w.proc.pid for w in fleet.workers}
    assert {t.result["pid"] for t in tasks} <= worker_pids
    assert all(f":{fleet.api.proc.pid}:" not in (t.worker or "") for t in tasks)


async def test_killed_worker_node_loses_nothing(fleet: Fleet, http: aiohttp.ClientSession) -> None:
    """A worker node SIGKILLed mid-run has its tasks reclaimed and finished by another."""
    queue = f"k{uuid.uuid4().hex[:10]}"
    victim, survivor = fleet.start_worker("victim", queue), fleet.start_worker("survivor", queue)
    store = await Store.connect(fleet.url)
    try:
        await asyncio.gather(victim.ready(), survivor.ready())
        ids = []
        for _ in range(16):
            status, task = await submit(http, fleet.api.url, "sleepy", queue, s=1.0)
            assert status == 201, task
            ids.append(task["id"])

        async def victim_runs_some() -> list[str]:
            tasks = await store.get_many([(queue, i) for i in ids])
            return [
                t.id
                for t in tasks
                if t
                and t.status == Status.PROCESSING
                and f":{victim.proc.pid}:" in (t.worker or "")
            ]

        held = await eventually(victim_runs_some)
        victim.kill(signal.SIGKILL)
        tasks = await eventually(lambda: finished(store, queue, ids), timeout_s=40)
        by_id = {t.id: t for t in tasks}
        for task_id in held:
            assert by_id[task_id].retry_count >= 1
            assert by_id[task_id].result["pid"] == survivor.proc.pid
        assert {t.result["pid"] for t in tasks} <= {victim.proc.pid, survivor.proc.pid}
    finally:
        await store.close()
        victim.close()
        survivor.close()


async def test_sigterm_lets_a_worker_nodes_running_task_finish(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    """SIGTERM on a worker node: its running task finishes within the grace period, exit 0."""
    queue = f"g{uuid.uuid4().hex[:10]}"
    worker = fleet.start_worker("graceful", queue)
    store = await Store.connect(fleet.url)
    try:
        await worker.ready()
        status, task = await submit(http, fleet.api.url, "sleepy", queue, s=1.0)
        assert status == 201, task

        async def running() -> bool:
            return (await store.get(task["id"], queue)).status == Status.PROCESSING

        await eventually(running)
        worker.kill(signal.SIGTERM)
        assert await worker.wait() == 0
        done = await store.get(task["id"], queue)
        assert (done.status, done.retry_count) == (Status.COMPLETED, 0)
    finally:
        await store.close()
        worker.close()


async def test_worker_health_port_answers_readyz_and_metrics(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    """A worker's health port answers /healthz, /readyz and /metrics, and nothing else."""
    base = fleet.workers[0].url
    async with http.get(f"{base}/healthz") as reply:
        assert reply.status == 200
    async with http.get(f"{base}/readyz") as reply:
        assert reply.status == 200
        assert (await reply.json())["status"] == "ok"
    async with http.get(f"{base}/metrics") as reply:
        assert reply.status == 200
        assert "taskd_tasks_completed" in await reply.text()
    for path in ("/api/tasks", "/", "/ws"):
        async with http.get(f"{base}{path}") as reply:
            assert reply.status == 404, path


async def test_api_only_node_is_ready_without_workers(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    """`serve --workers 0` reports ready (no worker pool is expected) and lists no consumer."""
    async with http.get(f"{fleet.api.url}/readyz") as reply:
        assert reply.status == 200
        assert (await reply.json())["problems"] == []
    async with http.get(f"{fleet.api.url}/api/workers") as reply:
        pids = {w["pid"] for w in (await reply.json())["workers"]}
    assert fleet.api.proc.pid not in pids


async def test_api_node_lists_both_worker_nodes(fleet: Fleet, http: aiohttp.ClientSession) -> None:
    """GET /api/workers on the API node lists both worker nodes with their task types."""
    async with http.get(f"{fleet.api.url}/api/workers") as reply:
        workers = {w["pid"]: w for w in (await reply.json())["workers"]}
    for node in fleet.workers:
        assert node.proc.pid in workers
        assert "sleepy" in workers[node.proc.pid]["task_types"]
        assert workers[node.proc.pid]["queues"] == [fleet.queue]


def browser_test(func: F) -> F:
    """Skipped like the dashboard's browser tests when Playwright or Chromium is missing."""
    for mark in BROWSER_MARKS:
        func = mark(func)
    return func


async def test_api_node_offers_worker_types_in_its_type_list(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    """/api/task-types on a node without handler modules lists the worker nodes' types
    (for the dashboard's submit form), after its own."""
    async with http.get(f"{fleet.api.url}/api/task-types") as reply:
        types = {t["name"]: t for t in (await reply.json())["task_types"]}
    assert {"email", "sleepy"} <= set(types)
    assert fleet.queue in types["sleepy"]["description"]


@browser_test
async def test_dashboard_of_api_node_shows_worker_nodes(fleet: Fleet) -> None:
    """The dashboard served by the API node shows both worker nodes in its workers panel."""
    async for browser in launch():
        watched = await open_page(browser, fleet.api.url)
        panel = watched.page.locator("#workers li")
        for node in fleet.workers:
            await expect(panel.filter(has_text=f":{node.proc.pid}:0")).to_have_count(1)
        await watched.context.close()
        assert watched.page_errors == []


async def test_api_node_accepts_types_of_live_workers_only(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    """Without handler modules, the API node accepts a type a live worker of the target
    queue runs and every built-in type; a type no live worker of the queue runs is 422."""
    status, _ = await submit(http, fleet.api.url, "sleepy", fleet.queue, s=0)
    assert status == 201
    status, _ = await submit(http, fleet.api.url, "data_processing", "nobody-here", records=[])
    assert status == 201
    status, body = await submit(http, fleet.api.url, "sleepy", "nobody-here", s=0)
    assert status == 422
    assert "'sleepy'" in body["error"]["message"]
    assert "'nobody-here'" in body["error"]["message"]
    batch = {"tasks": [{"task_type": "sleepy", "queue": fleet.queue}, {"task_type": "nope"}]}
    async with http.post(f"{fleet.api.url}/api/tasks/batch", json=batch) as reply:
        assert reply.status == 422
        errors = (await reply.json())["error"]["details"]["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, "task_type")]


def run_taskd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m taskd ARGS` to completion, with its output."""
    return subprocess.run(
        [sys.executable, "-m", "taskd", *args],
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_help_lists_its_options() -> None:
    """`taskd worker --help` lists the node options and the health port."""
    out = run_taskd("worker", "--help", env={}).stdout
    for option in ("--workers", "--queues", "--handlers", "--redis-url", "--config"):
        assert option in out
    for option in ("--log-format", "--log-level", "--health-port"):
        assert option in out


def test_worker_without_redis_says_what_to_set(tmp_path: Path) -> None:
    """A worker with no Redis URL and no local serve's embedded server exits with one line."""
    done = run_taskd("worker", env={"TASKD_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert "no Redis URL configured" in done.stderr
    assert "TASKD_REDIS_URL" in done.stderr


def test_worker_without_workers_is_refused(tmp_path: Path, redis_url: str) -> None:
    """`taskd worker --workers 0` is refused: a worker node must run tasks."""
    done = run_taskd(
        "worker", "--workers", "0", "--redis-url", redis_url, env={"HOME": str(tmp_path)}
    )
    assert done.returncode == 1
    assert "workers.count" in done.stderr
    assert "serve --workers 0" in done.stderr


def test_worker_on_a_taken_health_port_says_so(tmp_path: Path, redis_url: str) -> None:
    """A health port already in use ends the worker with one line naming the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_taskd(
            *("worker", "--redis-url", redis_url, "--health-port", str(port)),
            env={"HOME": str(tmp_path)},
        )
    assert done.returncode == 1
    assert f"config: server.health_port: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


async def test_worker_joins_embedded_redis_of_local_serve(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A worker without a URL uses the embedded server of the serve sharing its data dir."""
    data = tmp_path / "shared"
    api = DaemonProcess(data, "--workers", "0", env=FAST)
    worker: DaemonProcess | None = None
    try:
        await api.ready()
        worker = DaemonProcess(
            data / "w",
            "--handlers",
            HANDLERS,
            env=FAST | {"TASKD_DATA_DIR": str(data)},
            command="worker",
        )
        await worker.ready()
        status, task = await submit(http, api.url, "sleepy", "default", s=0)
        assert status == 201, task

        async def done() -> dict[str, Any] | None:
            async with http.get(f"{api.url}/api/tasks/{task['id']}") as reply:
                body: dict[str, Any] = await reply.json()
            return body if body["status"] == "completed" else None

        assert (await eventually(done, timeout_s=20))["result"]["pid"] == worker.proc.pid
    finally:
        if worker is not None:
            worker.close()
        api.close()
