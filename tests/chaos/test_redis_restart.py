"""Fault 2, Redis restart: Redis (AOF everysec) goes down twice under load, once cleanly, once
SIGKILLed; daemons reconnect by themselves and nothing accepted is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from taskd.client import Client
from taskd.embedded import EmbeddedRedis
from taskd.errors import RedisUnavailable
from taskd.model import make_spec
from taskd.store import Store
from tests.chaos.harness import (
    SIZES,
    Cluster,
    all_finished,
    census,
    check_stats,
    duplicates,
    http,
    read_executions,
    report,
    statuses,
    until,
)
from tests.conftest import eventually
from tests.procs import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SIZES.timeout_s)]
OUTAGE_S = 1.5
LEASE_S = 5.0
BATCH = 20


@pytest.fixture
async def aof_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test alone, with AOF everysec, restartable on the same port."""
    server = EmbeddedRedis(tmp_path / "redis", unix_socket=False, port=free_port())
    await server.start()
    yield server
    await server.stop()


class Submitter:
    """Submits batches at a steady pace, keeping what was accepted and what was refused."""

    def __init__(self, store: Store, queue: str, total: int) -> None:
        self.store, self.queue, self.total = store, queue, total
        self.accepted: list[str] = []
        self.refused = 0
        self.refusal_s: list[float] = []

    async def run(self, pace_s: float) -> None:
        while len(self.accepted) < self.total:
            batch = [make_spec("work", {"ms": 20}, queue=self.queue) for _ in range(BATCH)]
            started = time.monotonic()
            try:
                self.accepted += [t.id for t, _ in await self.store.submit(batch)]
            except RedisUnavailable:
                self.refused += len(batch)
                self.refusal_s.append(time.monotonic() - started)
            await asyncio.sleep(pace_s)  # load pacing, not synchronisation


async def _outage(
    redis: EmbeddedRedis, cluster: Cluster, store: Store, queue: str, how: str
) -> dict[str, Any]:
    """Take Redis down (clean stop or SIGKILL), probe submits, bring it back."""
    if how == "sigkill":
        assert redis.pid is not None
        os.kill(redis.pid, signal.SIGKILL)
    await redis.stop()
    down_at = time.monotonic()
    probe = await http(
        "POST",
        f"{cluster.alive[0].url}/api/tasks",
        {"task_type": "work", "payload": {"ms": 1}, "queue": queue},
    )
    client = Client(f"redis://127.0.0.1:{_port(redis)}", handlers=["tests.chaos.handlers"])
    started = time.monotonic()
    with pytest.raises(RedisUnavailable):
        await client.submit("work", {"ms": 1}, queue=queue)
    client_s = time.monotonic() - started
    await client.close()
    assert all(d.proc.poll() is None for d in cluster.daemons)
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))  # the outage itself
    await redis.start()
    up_at = time.monotonic()
    done_before = (await store.stats(queue))["completed_total"]

    async def all_ready() -> bool:
        replies = [await http("GET", f"{d.url}/readyz") for d in cluster.alive]
        return all(r.status == 200 for r in replies)

    await eventually(all_ready, timeout_s=20, interval_s=0.05)
    ready_s = time.monotonic() - up_at

    async def work_resumed() -> bool:
        return bool((await store.stats(queue))["completed_total"] > done_before)

    await eventually(work_resumed, timeout_s=20, interval_s=0.05)
    return {
        "how": how,
        "http_status": probe.status,
        "http_error": (probe.body or {}).get("error", {}).get("code"),
        "http_s": round(probe.elapsed_s, 3),
        "client_raise_s": round(client_s, 3),
        "down_s": round(up_at - down_at, 2),
        "ready_again_s": round(ready_s, 2),
        "work_resumed_s": round(time.monotonic() - up_at, 2),
    }


def _port(redis: EmbeddedRedis) -> int:
    return redis._port or 0  # the fixed port this test chose


async def test_redis_restarts_lose_nothing_accepted(
    aof_redis: EmbeddedRedis, queue: str, tmp_path: Path
) -> None:
    """Two Redis restarts under load: daemons reconnect, outage submits get 503, nothing is lost."""
    url = f"redis://127.0.0.1:{_port(aof_redis)}"
    store = await Store.connect(url)
    await store.ensure_queue(queue)
    config = {"tasks": {"lease_s": LEASE_S, "sweep_interval_s": 0.2}}
    cluster = Cluster(tmp_path, url, queue, workers=8, config=config)
    total = SIZES.restart_tasks
    submitter = Submitter(store, queue, total)
    outages: list[dict[str, Any]] = []
    try:
        await cluster.start(2)
        started = time.monotonic()
        feeding = asyncio.create_task(submitter.run(pace_s=8.0 * BATCH / total))
        await until(lambda: len(submitter.accepted) >= total // 3, 60)
        outages.append(await _outage(aof_redis, cluster, store, queue, "sigterm"))
        await until(lambda: len(submitter.accepted) >= 2 * total // 3, 60)
        outages.append(await _outage(aof_redis, cluster, store, queue, "sigkill"))
        await feeding
        ids = submitter.accepted
        await eventually(lambda: all_finished(store, queue, ids), timeout_s=60)
        elapsed = time.monotonic() - started
        final = await census(store, queue, ids)
        # Every task Redis holds, including submits whose reply an outage cut off.
        stored = list(await store.redis.zrange(store.keys(queue).index, 0, -1))
        await eventually(lambda: all_finished(store, queue, stored), timeout_s=30)
        stats = await check_stats(store, queue, await census(store, queue, stored))
        runs = read_executions(cluster.chaos_dir)
        assert all(d.proc.poll() is None for d in cluster.daemons)
    finally:
        cluster.close()
        await store.close()

    counts = statuses(final)
    assert counts == {"completed": len(ids)}, counts
    for outage in outages:
        assert outage["http_status"] == 503, outage
        assert outage["http_error"] == "redis_unavailable", outage
        assert outage["http_s"] < 2.0, outage
        assert outage["client_raise_s"] < 2.0, outage
    assert max(submitter.refusal_s) < 6.0  # socket_timeout 5 s bounds a reply lost mid-way
    unacknowledged = set(stored) - set(ids)
    report(
        "redis_restart",
        tasks_accepted=len(ids),
        refused_during_outages=submitter.refused,
        stored_but_reply_lost=len(unacknowledged),
        lost=counts.get("lost", 0),
        duplicate_executions=duplicates(runs),
        elapsed_s=round(elapsed, 1),
        outages=outages,
        stats_completed=stats["completed"],
    )
