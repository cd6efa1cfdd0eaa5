"""The queue routes on aiohttp's test server with real Redis: list, one, pause, resume, purge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from taskd.engine.context import Context
from taskd.engine.supervisor import Supervisor, SupervisorConfig
from taskd.errors import RedisUnavailable
from taskd.http.app import _sample_rates
from taskd.http.queues import RATES, QueueRates
from taskd.http.state import STATE
from taskd.model import STATUS_NAMES, Status, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.enginetools import complete, take
from tests.pooltools import running_pool
from tests.test_http_support import registry_with, serve_app

Client = TestClient[Any, Any]
FULL = {"Authorization": "Bearer full-1"}
READ = {"Authorization": "Bearer read-1"}
CONFIRM = {"confirm": True}


async def _work(ctx: Context, payload: dict[str, Any]) -> str:
    return "done"


async def _boom(ctx: Context, payload: dict[str, Any]) -> None:
    raise RuntimeError("boom")


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    """The app with `work` and `boom` types and no worker pool of its own."""
    async with serve_app(store, registry=registry_with(work=_work, boom=_boom)) as c:
        yield c


async def _submit(store: Store, queue: str, n: int, **fields: Any) -> list[str]:
    results = await store.submit([make_spec("work", queue=queue, **fields) for _ in range(n)])
    return [task.id for task, _ in results]


async def test_list_shows_each_queue_with_counts_depth_and_state(
    client: Client, store: Store, queue: str
) -> None:
    """GET /api/queues lists a queue with per-status counts, depth per priority and flags."""
    await _submit(store, queue, 3, priority=9)
    await _submit(store, queue, 1, priority=2, delay_s=3600)
    reply = await client.get("/api/queues")
    assert reply.status == 200
    found = {q["name"]: q for q in (await reply.json())["queues"]}
    mine = found[queue]
    assert mine["paused"] is False
    assert mine["workers"] == 0
    assert set(mine["counts"]) == {*STATUS_NAMES, "total"}
    assert mine["counts"]["pending"] == 3
    assert mine["counts"]["scheduled"] == 1
    assert mine["counts"]["total"] == 4
    assert mine["depth_by_priority"]["9"] == 3
    assert mine["depth_by_priority"]["2"] == 0  # scheduled: not ready yet
    assert set(mine["depth_by_priority"]) == {str(p) for p in range(1, 11)}
    assert mine["throughput"] == {"completed_per_s": 0.0, "failed_per_s": 0.0} | {
        "window_s": mine["throughput"]["window_s"]
    }


async def test_get_one_queue_and_unknown_or_malformed_names(
    client: Client, store: Store, queue: str
) -> None:
    """GET /api/queues/{name}: the summary; 404 for a queue never seen, 422 for a bad name."""
    await _submit(store, queue, 2)
    one = await client.get(f"/api/queues/{queue}/")
    assert one.status == 200
    body = await one.json()
    assert (body["name"], body["counts"]["pending"]) == (queue, 2)
    missing = await client.get(f"/api/queues/{queue}-nope")
    assert missing.status == 404
    error = (await missing.json())["error"]
    assert error["code"] == "not_found"
    assert error["details"] == {"queue": f"{queue}-nope"}
    bad = await client.get("/api/queues/" + "x" * 65)
    assert bad.status == 422
    assert (await bad.json())["error"]["details"]["field"] == "name"


async def test_pause_and_resume_are_shared_state(client: Client, store: Store, queue: str) -> None:
    """Pause sets the flag every daemon reads, resume clears it; both answer the queue."""
    await _submit(store, queue, 1)
    paused = await client.post(f"/api/queues/{queue}/pause")
    assert paused.status == 200
    assert (await paused.json())["paused"] is True
    assert await store.paused_queues([queue]) == {queue}
    listed = {q["name"]: q for q in (await (await client.get("/api/queues")).json())["queues"]}
    assert listed[queue]["paused"] is True
    resumed = await client.post(f"/api/queues/{queue}/resume")
    assert resumed.status == 200
    assert (await resumed.json())["paused"] is False
    assert await store.paused_queues([queue]) == set()


async def test_pause_and_resume_of_an_unknown_queue_are_404(client: Client, queue: str) -> None:
    """A typo does not create a silently paused queue."""
    for action in ("pause", "resume"):
        reply = await client.post(f"/api/queues/{queue}/{action}")
        assert reply.status == 404, action
    listed = (await (await client.get("/api/queues")).json())["queues"]
    assert queue not in [q["name"] for q in listed]


async def test_paused_queue_runs_its_tasks_once_resumed(
    client: Client, store: Store, queue: str
) -> None:
    """Tasks submitted while paused wait; after resume a running pool completes them."""
    await store.ensure_queue(queue)
    assert (await client.post(f"/api/queues/{queue}/pause")).status == 200
    ids = await _submit(store, queue, 3)
    async with running_pool(store, registry_with(work=_work), queue) as pool:
        await eventually(lambda: asyncio.sleep(0, result=queue in pool.fetcher.paused))
        assert {(await store.get(i)).status for i in ids} == {Status.PENDING}
        assert (await client.post(f"/api/queues/{queue}/resume")).status == 200

        async def all_done() -> bool:
            return {(await store.get(i)).status for i in ids} == {Status.COMPLETED}

        await eventually(all_done)


async def test_purge_needs_confirmation(client: Client, store: Store, queue: str) -> None:
    """Without {"confirm": true} a purge is 422 (400 for malformed JSON) and changes nothing."""
    await _submit(store, queue, 2)
    url = f"/api/queues/{queue}/purge"
    for body in (None, {}, {"confirm": False}, {"confirm": "yes"}, [True]):
        reply = await client.post(url, json=body) if body is not None else await client.post(url)
        assert reply.status == 422, body
        assert (await reply.json())["error"]["details"]["field"] == "confirm"
    extra = await client.post(url, json={"confirm": True, "also": 1})
    assert extra.status == 422
    malformed = await client.post(url, data=b"{confirm", headers={"Content-Type": "text/plain"})
    assert malformed.status == 400
    assert (await store.stats(queue))["pending"] == 2


async def test_purge_cancels_waiting_tasks_and_counts_them(
    client: Client, store: Store, queue: str
) -> None:
    """Pending and scheduled tasks are cancelled with error 'purged'; the answer counts them."""
    ids = await _submit(store, queue, 3) + await _submit(store, queue, 1, delay_s=3600)
    reply = await client.post(f"/api/queues/{queue}/purge", json=CONFIRM)
    assert reply.status == 200
    assert await reply.json() == {"queue": queue, "purged": 4}
    for task_id in ids:
        task = await store.get(task_id)
        assert (task.status, task.error) == (Status.CANCELLED, "purged")
    after = await (await client.get(f"/api/queues/{queue}")).json()
    assert after["counts"]["cancelled"] == 4
    assert sum(after["depth_by_priority"].values()) == 0


async def test_purge_of_an_unknown_queue_is_404(client: Client, queue: str) -> None:
    """Purging a queue that never existed says so."""
    reply = await client.post(f"/api/queues/{queue}/purge", json=CONFIRM)
    assert reply.status == 404


async def test_throughput_and_workers_per_queue(client: Client, store: Store, queue: str) -> None:
    """Completions and final failures of the queue show as rates; a serving pool as a worker."""
    done = await _submit(store, queue, 4)
    failed = [
        t.id
        for t, _ in await store.submit(
            [make_spec("boom", queue=queue, max_retries=0) for _ in range(2)]
        )
    ]
    registry = registry_with(work=_work, boom=_boom)
    async with running_pool(store, registry, queue):

        async def measured() -> dict[str, Any] | None:
            body: dict[str, Any] = await (await client.get(f"/api/queues/{queue}")).json()
            rates = body["throughput"]
            ready = rates["completed_per_s"] > 0 and rates["failed_per_s"] > 0
            return body if ready and body["workers"] == 1 else None

        body = await eventually(measured)
    assert body["counts"]["completed"] == len(done)
    assert body["counts"]["failed"] == len(failed)
    assert body["throughput"]["window_s"] >= 1


async def test_task_list_filters_by_queue(client: Client, store: Store, queue: str) -> None:
    """GET /api/tasks?queue= returns only that queue's tasks; an unused name gives none."""
    mine = set(await _submit(store, queue, 2))
    await _submit(store, f"{queue}-other", 2)
    page = await (await client.get(f"/api/tasks?queue={queue}")).json()
    assert {t["id"] for t in page["tasks"]} == mine
    empty = await (await client.get(f"/api/tasks?queue={queue}-unused")).json()
    assert empty["tasks"] == []
    assert (await client.get("/api/tasks?queue=bad name")).status == 422


async def test_queue_writes_need_a_full_token(store: Store, queue: str) -> None:
    """Reading queues needs any token; pause, resume and purge need a full one."""
    await _submit(store, queue, 1)
    async with serve_app(store, auth__tokens="full-1", auth__read_tokens="read-1") as c:
        assert (await c.get("/api/queues")).status == 401
        assert (await c.get("/api/queues", headers=READ)).status == 200
        assert (await c.get(f"/api/queues/{queue}", headers=READ)).status == 200
        for action, body in (("pause", None), ("resume", None), ("purge", CONFIRM)):
            url = f"/api/queues/{queue}/{action}"
            assert (await c.post(url, json=body)).status == 401, action
            assert (await c.post(url, json=body, headers=READ)).status == 403, action
            assert (await c.post(url, json=body, headers=FULL)).status == 200, action


def test_rates_cover_a_sliding_window_from_process_start() -> None:
    """Rates are the counters' growth divided by the time observed (at least 1 s, at most
    the window); old growth ages out; a queue first seen later counts from zero; counters
    that went backwards (Redis flushed) start over instead of counting negative work."""
    now = [1000.0]
    rates = QueueRates(window_s=60, clock=lambda: now[0])
    rates.observe({"q": (100, 7)})  # the first sample is the baseline
    now[0] = 1000.5
    rates.observe({"q": (103, 7)})
    now[0] = 1010.0
    rates.observe({"q": (103, 8), "other": (2, 0)})
    now[0] = 1030.0
    assert rates.rates("q") == {"completed_per_s": 0.1, "failed_per_s": 0.033, "window_s": 30.0}
    assert rates.rates("other")["completed_per_s"] == 0.067
    now[0] = 1069.0
    assert rates.rates("q") == {"completed_per_s": 0.0, "failed_per_s": 0.017, "window_s": 60.0}
    assert rates.rates("never")["completed_per_s"] == 0.0
    rates.observe({"q": (0, 0)})
    now[0] = 1070.0
    rates.observe({"q": (3, 0)})
    assert rates.rates("q")["completed_per_s"] == 0.05


class _CancelBecomesConnectionError(QueueRates):
    """Samples like redis-py can behave when cancelled mid-command: the cancel comes out
    as a connection error (RedisUnavailable), the task still marked as cancelling."""

    def __init__(self) -> None:
        super().__init__()
        self.sampling = asyncio.Event()

    async def sample(self, store: Store) -> None:
        self.sampling.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RedisUnavailable("connection closed by a cancel") from None


async def test_rate_sampling_stops_with_the_app_even_when_a_cancel_is_swallowed() -> None:
    """Closing the app ends the sampler although its cancel surfaced as RedisUnavailable."""
    app = web.Application()
    rates = _CancelBecomesConnectionError()
    app[RATES] = rates
    app[STATE] = SimpleNamespace(store=None)  # type: ignore[assignment]  # never reached
    context = _sample_rates(app)
    await anext(context)
    await asyncio.wait_for(rates.sampling.wait(), 5)
    async with asyncio.timeout(5):
        with pytest.raises(StopAsyncIteration):
            await anext(context)


async def test_a_stream_trimmed_empty_shows_no_phantom_ready_tasks(
    client: Client, store: Store, queue: str
) -> None:
    """After entries were deleted before delivery and the stream trimmed empty (Redis's
    group lag still counts the deleted ones), housekeeping leaves depth at 0 and
    /api/queues and the queue's own page show no ready task."""
    await _submit(store, queue, 3)
    for task in await take(store, queue, "c", 10):
        await complete(store, task, None)
    await _submit(store, queue, 4)
    assert await store.purge(queue) == 4
    housekeeping = Supervisor(store, "s", SupervisorConfig())
    for _ in range(2):  # the lag shows once the acknowledged entries are trimmed away
        await housekeeping.housekeep(queue)
    reply = await client.get("/api/queues")
    mine = {q["name"]: q for q in (await reply.json())["queues"]}[queue]
    assert set(mine["depth_by_priority"].values()) == {0}
    one = await (await client.get(f"/api/queues/{queue}")).json()
    assert set(one["depth_by_priority"].values()) == {0}
    assert await store.depth_by_priority(queue) == dict.fromkeys(range(1, 11), 0)
