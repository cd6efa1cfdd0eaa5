"""GET /api/tasks/stats/history: shape, validation, auth, and history across a restart."""

from __future__ import annotations

import itertools
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from taskd.model import make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.procs import DaemonProcess
from tests.test_http_support import serve_app

PATH = "/api/tasks/stats/history"


async def test_history_answers_per_minute_buckets(store: Store, queue: str) -> None:
    """The answer lists one bucket per minute, oldest first, the current one holding what
    was just submitted; bucket_s sums minutes into wider buckets."""
    await store.submit(
        [make_spec("email", {"to": "a@b.c", "subject": "hi"}, queue=queue) for _ in range(4)]
    )
    async with serve_app(store) as client:
        reply = await client.get(PATH, params={"minutes": "5", "queue": queue})
        assert reply.status == 200
        body = await reply.json()
        assert body["bucket_s"] == 60
        assert len(body["buckets"]) == 5
        ats = [datetime.fromisoformat(b["at"]) for b in body["buckets"]]
        assert all((b - a).total_seconds() == 60 for a, b in itertools.pairwise(ats))
        assert sum(b["submitted"] for b in body["buckets"][-2:]) == 4
        assert body["buckets"][-1].keys() == {
            "at", "submitted", "completed", "failed", "run_ms_p50", "run_ms_p95"
        }  # fmt: skip
        wide = await client.get(PATH, params={"minutes": "180", "bucket_s": "3600", "queue": queue})
        buckets = (await wide.json())["buckets"]
        assert 3 <= len(buckets) <= 4
        assert sum(b["submitted"] for b in buckets) == 4
        typed = await client.get(PATH, params={"queue": queue, "task_type": "report_generation"})
        assert sum(b["submitted"] for b in (await typed.json())["buckets"]) == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"minutes": "0"}, "minutes"),
        ({"minutes": "10081"}, "minutes"),
        ({"minutes": "ten"}, "minutes"),
        ({"bucket_s": "90"}, "bucket_s"),
        ({"bucket_s": "0"}, "bucket_s"),
        ({"queue": "no spaces"}, "queue"),
        ({"task_type": "x" * 101}, "task_type"),
        ({"minute": "5"}, "minute"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(
    store: Store, params: dict[str, str], field: str
) -> None:
    """Each bad parameter is refused with 422 and details.field naming it."""
    async with serve_app(store) as client:
        reply = await client.get(PATH, params=params)
        assert reply.status == 422
        assert (await reply.json())["error"]["details"]["field"] == field


async def test_history_needs_a_read_token(store: Store) -> None:
    """Like every read, history needs a token when auth is on; a read-only one is enough."""
    async with serve_app(store, auth__tokens="full-1", auth__read_tokens="read-1") as client:
        assert (await client.get(PATH)).status == 401
        assert (await client.get(PATH, headers={"Authorization": "Bearer read-1"})).status == 200


async def _completed(url: str, queue: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}{PATH}", params={"minutes": "10", "queue": queue}) as reply,
    ):
        body: dict[str, Any] = await reply.json()
    return sum(b["completed"] for b in body["buckets"])


@pytest.mark.slow
async def test_history_survives_a_daemon_restart(tmp_path: Path) -> None:
    """Counts written before a restart of an embedded daemon are served after it."""
    args = ("--workers", "2", "--queues", "hist")
    first = DaemonProcess(tmp_path / "d", *args)
    try:
        await first.ready()
        body = {"task_type": "email", "payload": {"to": "a@b.c", "subject": "hi"}, "queue": "hist"}
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.post(f"{first.url}/api/tasks", json=body) as reply:
                    assert reply.status == 201
        await eventually(lambda: _has(first.url, 3), timeout_s=30)
        first.kill(signal.SIGTERM)
        assert await first.wait() == 0
    finally:
        first.close()
    second = DaemonProcess(tmp_path / "d", *args)
    try:
        await second.ready()
        assert await _completed(second.url, "hist") == 3
    finally:
        second.kill(signal.SIGTERM)
        await second.wait()
        second.close()


async def _has(url: str, n: int) -> bool:
    return await _completed(url, "hist") >= n
