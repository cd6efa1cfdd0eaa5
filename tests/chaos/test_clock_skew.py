"""Fault 7, clock skew: daemons whose clocks are 300 s ahead and behind share one queue.

Skew is injected with libfaketime (``apt-get install faketime``) when it is installed, else
(or with ``TASKD_CHAOS_SKEW=inject``) by a ``sitecustomize`` that shifts Python's wall
clock. Every lease and due-time decision uses Redis's ``TIME``, so neither clock may
reclaim early or start delayed tasks early.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskd.model import Status
from taskd.store import Store
from tests.chaos.harness import (
    SIZES,
    Cluster,
    all_finished,
    census,
    check_stats,
    http,
    logged,
    read_executions,
    report,
    specs,
    statuses,
    submit,
    until,
)
from tests.conftest import eventually
from tests.procs import REPO, DaemonProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SIZES.timeout_s)]
LEASE_S = 2.0
SKEW_S = 300
FAKETIME_LIBS = (
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"),
    Path("/usr/lib/faketime/libfaketimeMT.so.1"),
)


def skewed_env(offset_s: int) -> tuple[str, dict[str, str]]:
    """Environment that runs a daemon with its wall clock off by ``offset_s``."""
    lib = next((p for p in FAKETIME_LIBS if p.exists()), None)
    if lib is not None and os.environ.get("TASKD_CHAOS_SKEW") != "inject":
        return "libfaketime", {
            "LD_PRELOAD": str(lib),
            "FAKETIME": f"{offset_s:+d}s",
            "DONT_FAKE_MONOTONIC": "1",  # timers stay true; only the wall clock is off
        }
    folder = Path(__file__).parent / "skewclock"
    return "sitecustomize", {
        "PYTHONPATH": f"{folder}:{REPO}",
        "TASKD_TEST_CLOCK_SKEW_S": str(offset_s),
    }


async def redis_ms(store: Store) -> int:
    """Redis's clock, in ms."""
    seconds, micros = await store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def heartbeat_skew_s(daemon: DaemonProcess) -> float:
    """How far the daemon's heartbeat time (its ``time.time()``) is from the true time."""
    reply = await http("GET", f"{daemon.url}/api/workers")
    (mine,) = [w for w in reply.body["workers"] if w["pid"] == daemon.proc.pid]
    stamp = datetime.fromisoformat(mine["heartbeat_at"].replace("Z", "+00:00"))
    return (stamp - datetime.now(UTC)).total_seconds()


async def test_skewed_clocks_neither_reclaim_nor_promote_early(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """Clocks ±300 s off: no early reclaim, no early start of delayed tasks, timely recovery."""
    config = {
        "tasks": {"lease_s": LEASE_S, "sweep_interval_s": 0.2},
        "workers": {"prefetch": 1},  # 7 held at most: the long tasks need both daemons
    }
    cluster = Cluster(tmp_path, redis_url, queue, workers=6, config=config)
    method, ahead_env = skewed_env(+SKEW_S)
    _, behind_env = skewed_env(-SKEW_S)
    try:
        (ahead,) = await cluster.start(1, env=ahead_env)
        (behind,) = await cluster.start(1, env=behind_env)
        skews = [await heartbeat_skew_s(d) for d in (ahead, behind)]
        assert skews[0] > SKEW_S - 30
        assert skews[1] < -SKEW_S + 30

        # Tasks outliving several leases, held by both daemons: renewed, never reclaimed.
        long = await submit(store, specs("work", [{"ms": 3 * LEASE_S * 1000}] * 8, queue))
        delayed = await submit(store, specs("work", [{"ms": 1}] * 10, queue, delay_s=3))
        run_at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        scheduled = await submit(store, specs("work", [{"ms": 1}] * 10, queue, run_at=run_at))
        ids = [t.id for t in long + delayed + scheduled]
        await eventually(lambda: all_finished(store, queue, ids), timeout_s=30)
        first = await census(store, queue, ids)
        runs = read_executions(cluster.chaos_dir)
        assert statuses(first) == {"completed": len(ids)}
        assert all(len(runs[i]) == 1 for i in ids)
        assert all(first[t.id].retry_count == 0 for t in long)  # type: ignore[union-attr]
        assert {r.pid for t in long for r in runs[t.id]} == {ahead.proc.pid, behind.proc.pid}
        assert logged(ahead, "task_reclaimed") + logged(behind, "task_reclaimed") == 0
        lateness = []
        for task in delayed + scheduled:
            done = first[task.id]
            assert done is not None
            assert done.run_at is not None
            assert done.started_at is not None
            assert done.started_at >= done.run_at, (done.started_at, done.run_at)
            lateness.append((done.started_at - done.run_at) / 1000)
        assert max(lateness) < 1.5

        # The ahead daemon dies holding tasks: the behind one reclaims them after the
        # lease, by Redis's clock - not 300 s late, not early.
        victims = await submit(store, specs("work", [{"ms": 2000}] * 14, queue))
        victim_ids = [t.id for t in victims]

        def ahead_running() -> list[str]:
            now = read_executions(cluster.chaos_dir)
            return [i for i in victim_ids if i in now and now[i][0].pid == ahead.proc.pid]

        await until(lambda: len(ahead_running()) >= 4)
        killed_ms = await redis_ms(store)
        cluster.kill(ahead)
        held = ahead_running()
        await eventually(lambda: all_finished(store, queue, victim_ids), timeout_s=30)
        final = await census(store, queue, victim_ids)
        await check_stats(store, queue, first | final)
    finally:
        cluster.close()

    recovery = []
    for task_id in held:
        done = final[task_id]
        assert done is not None
        assert done.status == Status.COMPLETED
        assert done.retry_count == 1
        assert done.started_at is not None
        recovery.append((done.started_at - killed_ms) / 1000)
    assert min(recovery) >= LEASE_S - 0.1
    assert max(recovery) < LEASE_S + 5
    report(
        "clock_skew",
        method=method,
        skews_s=[round(s) for s in skews],
        long_tasks_renewed_not_reclaimed=len(long),
        delayed_tasks=len(delayed) + len(scheduled),
        start_after_due_s_max=round(max(lateness), 3),
        reclaimed_after_kill_s=[round(r, 2) for r in sorted(recovery)],
    )
