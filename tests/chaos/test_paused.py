"""Fault 6, paused holder: a SIGSTOPped daemon's tasks move on; its late reports are fenced off."""

from __future__ import annotations

import signal
import time
from collections import Counter
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
    logged,
    read_executions,
    report,
    specs,
    statuses,
    submit,
    until,
)
from tests.conftest import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SIZES.timeout_s)]
LEASE_S = 2.0


async def test_paused_holder_is_fenced_off(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """A daemon paused past its lease: its tasks finish elsewhere once, its late results refused."""
    config = {"tasks": {"lease_s": LEASE_S, "sweep_interval_s": 0.2}}
    cluster = Cluster(tmp_path, redis_url, queue, workers=4, config=config)
    try:
        paused, other = await cluster.start(2)
        tasks = await submit(store, specs("work", [{"ms": 3000}] * 12, queue))
        ids = [t.id for t in tasks]

        def running_on_paused() -> list[str]:
            runs = read_executions(cluster.chaos_dir)
            return [i for i, rs in runs.items() if rs[0].pid == paused.proc.pid]

        await until(lambda: len(running_on_paused()) == 4)
        paused.kill(signal.SIGSTOP)
        stopped_at = time.monotonic()
        mark = f":{paused.proc.pid}:"
        held = [
            i
            for i, t in (await census(store, queue, ids)).items()
            if t is not None and t.status == Status.PROCESSING and mark in (t.worker or "")
        ]
        running = running_on_paused()

        async def held_done_elsewhere() -> bool:
            now = await census(store, queue, held)
            return all(
                t is not None
                and t.status == Status.COMPLETED
                and (t.result or {}).get("pid") == other.proc.pid
                for t in now.values()
            )

        await eventually(held_done_elsewhere, timeout_s=30)
        paused_s = time.monotonic() - stopped_at
        paused.kill(signal.SIGCONT)
        # Its four handlers wake up, finish, and try to complete attempts it lost.
        await until(lambda: logged(paused, "stale_attempt_refused") >= len(running), 15)
        await eventually(lambda: all_finished(store, queue, ids), timeout_s=30)
        final = await census(store, queue, ids)
        runs = read_executions(cluster.chaos_dir)
        events = await store.read_events({queue: "0-0"}, count=100_000)
        refused = logged(paused, "stale_attempt_refused")

        # Still a working member afterwards.
        more = await submit(store, specs("work", [{"ms": 10}] * 40, queue))
        await eventually(lambda: all_finished(store, queue, [t.id for t in more]))
        assert paused.proc.poll() is None
        await check_stats(store, queue, final | await census(store, queue, [t.id for t in more]))
    finally:
        cluster.close()

    assert paused_s > LEASE_S
    assert statuses(final) == {"completed": len(ids)}
    completions = Counter(e.task["id"] for e in events if e.kind == "completed")
    assert all(completions[i] == 1 for i in ids), completions
    assert all(len(runs[i]) <= 2 for i in ids)
    for task_id in held:
        assert final[task_id].result["pid"] == other.proc.pid  # type: ignore[index,union-attr]
    late = [r for i in held for r in runs[i] if r.pid == paused.proc.pid and r.ended is not None]
    assert len(late) >= len(running)
    report(
        "paused_holder",
        tasks=len(ids),
        held_when_paused=len(held),
        running_when_paused=len(running),
        paused_s=round(paused_s, 2),
        late_completions_refused=refused,
        extra_executions=sum(len(runs[i]) - 1 for i in ids),
    )
