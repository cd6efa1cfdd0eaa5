"""Fault 1, process crash: daemons SIGKILLed and restarted while thousands of tasks run."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

import pytest

from taskd.history import Counts, sum_by_minute
from taskd.keys import GROUP
from taskd.model import Status
from taskd.store import Store
from tests.chaos.harness import (
    SIZES,
    Cluster,
    all_finished,
    census,
    check_stats,
    duplicates,
    read_executions,
    report,
    specs,
    statuses,
    submit,
)
from tests.conftest import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SIZES.timeout_s)]
LEASE_S = 2.0


async def _held_by(store: Store, queue: str, ids: list[str], pid: int) -> list[str]:
    tasks = await census(store, queue, ids)
    mark = f":{pid}:"
    return [
        i
        for i, t in tasks.items()
        if t is not None
        and t.status in (Status.RESERVED, Status.PROCESSING)
        and mark in (t.worker or "")
    ]


async def test_sigkilled_daemons_lose_no_task(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """Every task completes despite SIGKILLs; only tasks a killed process held run twice."""
    config = {"tasks": {"lease_s": LEASE_S, "sweep_interval_s": 0.2}}
    cluster = Cluster(tmp_path, redis_url, queue, workers=8, config=config)
    rng = random.Random(7)
    try:
        await cluster.start(3)
        payloads = [{"ms": rng.randint(1, 200)} for _ in range(SIZES.crash_tasks)]
        started = time.monotonic()
        tasks = await submit(store, specs("work", payloads, queue, max_retries=25))
        ids = [t.id for t in tasks]
        kills: list[tuple[int, float, list[str]]] = []  # pid, wall time, tasks it held
        last_kill = time.monotonic()
        deadline = started + SIZES.timeout_s - 30
        while not await all_finished(store, queue, ids):
            assert time.monotonic() < deadline, statuses(await census(store, queue, ids))
            if time.monotonic() - last_kill >= SIZES.crash_kill_every_s:
                victim = rng.choice(cluster.alive)
                killed_at = time.time()
                cluster.kill(victim)
                # Read after the kill: what it held then still names it until reclaimed (a
                # census before the kill, slow on 10,000 tasks, saw tasks it had finished).
                held = await _held_by(store, queue, ids, victim.proc.pid)
                kills.append((victim.proc.pid, killed_at, held))
                cluster.spawn()
                last_kill = time.monotonic()
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        final = await census(store, queue, ids)
        runs = read_executions(cluster.chaos_dir)
    finally:
        cluster.close()

    counts = statuses(final)
    assert counts == {"completed": len(ids)}, counts
    killed = set(cluster.killed)
    for task_id, task in final.items():
        assert task is not None
        assert task.result is not None
        winner = (task.result["pid"], task.result["attempt"])
        assert winner[1] == task.attempt, task_id
        for run in runs[task_id]:
            if (run.pid, run.attempt) != winner:
                assert run.pid in killed, (task_id, run, winner)
    stats = await check_stats(store, queue, final)
    # Replies lost with the killed processes never double-count the per-minute history.
    history = await history_totals(store, queue, minutes=int(elapsed // 60) + 3)
    assert (history.submitted, history.completed, history.failed) == (len(ids), len(ids), 0)

    async def nothing_pending() -> bool:
        pending = [await store.redis.xpending(s, GROUP) for s in store.keys(queue).streams.values()]
        return all(p["pending"] == 0 for p in pending)

    await eventually(nothing_pending, timeout_s=2 * LEASE_S + 5)

    recoveries = []
    for _pid, killed_at, held in kills:
        for task_id in held:
            # A task may still have completed between the census and the kill.
            later = [r.started for r in runs[task_id] if r.started > killed_at]
            if later:
                recoveries.append(later[0] - killed_at)
    report(
        "process_crash",
        tasks=len(ids),
        daemons=3,
        workers=8,
        kills=len(kills),
        tasks_held_by_killed=sum(len(h) for _, _, h in kills),
        duplicate_executions=duplicates(runs),
        lost=0,
        recovery_s_mean=round(statistics.fmean(recoveries), 2) if recoveries else None,
        recovery_s_max=round(max(recoveries), 2) if recoveries else None,
        elapsed_s=round(elapsed, 1),
        stats=stats,
    )
    assert kills, "the run ended before any daemon was killed"


async def history_totals(store: Store, queue: str, minutes: int) -> Counts:
    """The queue's per-minute history summed over the last ``minutes``."""
    now = await store.redis_minute()
    total = Counts()
    for counts in sum_by_minute(await store.history(now - minutes, now, queue)).values():
        total.add(counts)
    return total
