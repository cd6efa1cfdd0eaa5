"""Fault 4, poison and hung tasks: bad handlers never shrink the pool or wedge a task."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

import pytest
import structlog

from taskd.daemon.looplag import LoopLag
from taskd.model import Status
from taskd.store import Store
from tests.chaos.harness import (
    SIZES,
    Cluster,
    all_finished,
    census,
    check_stats,
    logged,
    max_overlap,
    read_executions,
    report,
    specs,
    statuses,
    submit,
)
from tests.conftest import eventually

pytestmark = [pytest.mark.timeout(SIZES.timeout_s)]
CONFIG = {
    "tasks": {
        "lease_s": 5,
        "sweep_interval_s": 0.2,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
    }
}
KINDS = ("poison", "system_exit", "keyboard_interrupt", "generator_exit")
ERRORS = {
    "poison": "PoisonError: chaos poison",
    "system_exit": "SystemExit: chaos system_exit",
    "keyboard_interrupt": "KeyboardInterrupt: chaos keyboard_interrupt",
    "generator_exit": "GeneratorExit: chaos generator_exit",
}


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:  # noqa: S310 - loopback
        text = reply.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


@pytest.mark.slow
async def test_poison_and_hung_tasks_end_failed_and_pool_keeps_size(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """BaseExceptions, hangs and ignored cancellation fail their tasks; the pool stays whole."""
    cluster = Cluster(tmp_path, redis_url, queue, workers=4, config=CONFIG)
    try:
        (daemon,) = await cluster.start(1)
        raising = await submit(
            store, specs("raise_base", [{"kind": k} for k in KINDS], queue, max_retries=2)
        )
        (hung,) = await submit(store, specs("hang", [{}], queue, max_retries=1, timeout_s=1))
        (deaf,) = await submit(
            store, specs("swallow_cancel", [{"s": 6}], queue, max_retries=0, timeout_s=1)
        )
        (blocker,) = await submit(store, specs("block_loop", [{"s": 2}], queue, max_retries=0))
        ids = [t.id for t in [*raising, hung, deaf, blocker]]
        started = time.monotonic()
        await eventually(lambda: all_finished(store, queue, ids), timeout_s=30)
        settle_s = time.monotonic() - started
        final = await census(store, queue, ids)
        dead = store.keys(queue).dead

        for kind, task in zip(KINDS, raising, strict=True):
            done = final[task.id]
            assert done is not None
            assert done.status == Status.FAILED
            assert done.retry_count == 2
            assert done.error == ERRORS[kind]
            assert await store.redis.zscore(dead, task.id) is not None
        for task in (hung, deaf):
            done = final[task.id]
            assert done is not None
            assert done.status == Status.FAILED
            assert done.error == "timed out after 1s"
            assert await store.redis.zscore(dead, task.id) is not None
        assert final[blocker.id].status == Status.COMPLETED  # type: ignore[union-attr]
        runs = read_executions(cluster.chaos_dir)
        assert [len(runs[t.id]) for t in raising] == [3] * len(KINDS)
        assert len(runs[hung.id]) == 2
        assert "cancel_swallowed" in runs[deaf.id][0].events
        assert logged(daemon, "handler_ignored_cancellation") == 1
        assert logged(daemon, "event_loop_blocked") >= 1
        lag_max = _metric(daemon.url, "taskd_event_loop_lag_max_seconds")
        assert lag_max >= 1.5

        # All four runners are still there: four 1 s tasks run side by side.
        probes = await submit(store, specs("work", [{"ms": 1000}] * 4, queue))
        await eventually(lambda: all_finished(store, queue, [t.id for t in probes]))
        probe_runs = [r for t in probes for r in read_executions(cluster.chaos_dir)[t.id]]
        assert max_overlap(probe_runs, daemon.proc.pid) == 4
        assert daemon.proc.poll() is None
        everything = await census(store, queue, ids + [t.id for t in probes])
        await check_stats(store, queue, everything)
    finally:
        cluster.close()
    report(
        "poison_and_hung",
        base_exceptions=len(KINDS),
        attempts_each=3,
        hung_attempts=2,
        settle_s=round(settle_s, 1),
        loop_lag_max_s=round(lag_max, 2),
        pool_size_after=4,
    )


@pytest.mark.slow
async def test_task_that_kills_its_worker_is_dead_lettered(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """A task whose handler kills its process each time fails as "worker lost" after its limit."""
    config = {"tasks": {"lease_s": 1.5, "sweep_interval_s": 0.2}}
    cluster = Cluster(tmp_path, redis_url, queue, workers=2, config=config)
    try:
        await cluster.start(2)
        (pill,) = await submit(store, specs("crash", [{}], queue, max_retries=1))
        bystanders = await submit(store, specs("work", [{"ms": 50}] * 20, queue))
        ids = [pill.id, *(t.id for t in bystanders)]
        deaths = 0
        deadline = time.monotonic() + 45
        while not await all_finished(store, queue, ids):
            assert time.monotonic() < deadline, statuses(await census(store, queue, ids))
            dead = [d for d in cluster.daemons if d.proc.poll() is not None]
            while len(dead) > deaths:  # restart like systemd's Restart=on-failure
                deaths += 1
                cluster.spawn()
            await asyncio.sleep(0.1)
        final = await census(store, queue, ids)
    finally:
        cluster.close()
    done = final[pill.id]
    assert done is not None
    assert done.status == Status.FAILED
    assert done.error is not None
    assert done.error.startswith("worker lost:")
    assert await store.redis.zscore(store.keys(queue).dead, pill.id) is not None
    assert len(read_executions(cluster.chaos_dir)[pill.id]) == 2
    assert deaths == 2
    assert statuses(final) == {"failed": 1, "completed": len(bystanders)}
    report("poison_pill", executions=2, processes_killed=deaths, error=done.error)


async def test_loop_lag_monitor_warns_and_keeps_the_peak() -> None:
    """Blocking the loop for 0.4 s is measured, kept as the peak and logged as a warning."""
    lag = LoopLag(interval_s=0.05, warn_s=0.2)
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        job = asyncio.create_task(lag.run(stop))
        await asyncio.sleep(0)  # one turn of the loop: the monitor arms its timer
        time.sleep(0.4)  # noqa: ASYNC251 - blocking the loop is what is measured
        await eventually(lambda: asyncio.sleep(0, result=lag.blocked))
        stop.set()
        await job
    assert 0.3 <= lag.max_s < 1.0
    assert lag.healthy(1.0)
    warnings = [e for e in logs if e["event"] == "event_loop_blocked"]
    assert len(warnings) == 1
    assert warnings[0]["lag_ms"] >= 300
