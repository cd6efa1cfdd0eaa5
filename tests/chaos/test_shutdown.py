"""Fault 3, graceful shutdown: SIGTERM finishes what it can, hands back the rest, exits 0."""

from __future__ import annotations

import signal
import time
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
GRACE_S = 2.0
# A long lease: tasks left to lease expiry would visibly stay "processing" for 30 s.
CONFIG = {
    "server": {"shutdown_grace_s": GRACE_S},
    "tasks": {"lease_s": 30, "sweep_interval_s": 0.2},
}


async def _events_started_after(store: Store, queue: str, pid: int, after_ms: int) -> list[str]:
    """Tasks that the daemon with this pid started after a moment of Redis time."""
    events = await store.read_events({queue: "0-0"}, count=100_000)
    mark = f":{pid}:"
    return [
        e.task["id"]
        for e in events
        if e.kind == "started" and mark in str(e.task.get("worker", "")) and e.ts > after_ms
    ]


async def test_sigterm_finishes_running_and_hands_back_the_rest(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """SIGTERM: no new fetch, short tasks finish within the grace period, the rest are pending."""
    cluster = Cluster(tmp_path, redis_url, queue, workers=4, config=CONFIG)
    try:
        (daemon,) = await cluster.start(1)
        pid = daemon.proc.pid
        # Fetched FIFO: two short and two long tasks run, four more wait in the prefetch
        # buffer, the rest stay in the stream.
        durations = [1000, 1000, 5000, 5000] + [1000] * 20
        tasks = await submit(store, specs("work", [{"ms": ms} for ms in durations], queue))
        ids = [t.id for t in tasks]

        async def four_running() -> bool:
            runs = read_executions(cluster.chaos_dir)
            counts = statuses(await census(store, queue, ids))
            return len(runs) == 4 and (counts["processing"], counts["reserved"]) == (4, 4)

        await eventually(four_running, timeout_s=10)
        seconds, micros = await store.redis.time()
        sigterm_ms = int(seconds) * 1000 + int(micros) // 1000
        sigterm_at = time.time()
        signalled = time.monotonic()
        daemon.kill(signal.SIGTERM)
        code = await daemon.wait(timeout_s=GRACE_S + 10)
        exit_s = time.monotonic() - signalled
        after = await census(store, queue, ids)
        runs = read_executions(cluster.chaos_dir)
        late_starts = await _events_started_after(store, queue, pid, sigterm_ms)
        assert await _events_started_after(store, queue, pid, 0)  # the filter does match

        assert code == 0, daemon.output()[-3000:]
        assert exit_s < GRACE_S + 2.0, exit_s
        assert not [r for rs in runs.values() for r in rs if r.started > sigterm_at]
        assert late_starts == []
        assert [after[i].status for i in ids[:2]] == [Status.COMPLETED] * 2  # type: ignore[union-attr]
        assert all(after[i].status == Status.PENDING for i in ids[2:]), statuses(after)  # type: ignore[union-attr]
        assert all(after[i].retry_count == 0 for i in ids[2:])  # type: ignore[union-attr]
        await check_stats(store, queue, after)
        assert logged(daemon, "shutdown_waiting")
        released = daemon.output().count('"outcome":"pending"')

        await cluster.start(1, env={"TASKD_WORKERS": "8"})
        await eventually(lambda: all_finished(store, queue, ids), timeout_s=30)
        final = await census(store, queue, ids)
        assert statuses(final) == {"completed": len(ids)}
        assert all(final[i].result["pid"] != pid for i in ids[2:])  # type: ignore[index,union-attr]
        await check_stats(store, queue, final)
    finally:
        cluster.close()
    report(
        "graceful_shutdown",
        grace_s=GRACE_S,
        exit_code=code,
        exit_after_sigterm_s=round(exit_s, 2),
        finished_in_grace=2,
        handed_back=released,
        started_after_sigterm=len(late_starts),
    )


async def test_second_sigterm_exits_at_once(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """A second SIGTERM during the grace period ends the process at once."""
    config = CONFIG | {"server": {"shutdown_grace_s": 60}}
    cluster = Cluster(tmp_path, redis_url, queue, workers=2, config=config)
    try:
        (daemon,) = await cluster.start(1)
        tasks = await submit(store, specs("work", [{"ms": 60_000}] * 2, queue))
        await until(lambda: len(read_executions(cluster.chaos_dir)) == 2)
        daemon.kill(signal.SIGTERM)
        await until(lambda: logged(daemon, "shutdown_waiting"))
        signalled = time.monotonic()
        daemon.kill(signal.SIGTERM)
        code = await daemon.wait(timeout_s=10)
        exit_s = time.monotonic() - signalled
        assert code == 128 + signal.SIGTERM
        assert exit_s < 1.0, exit_s
        assert "second_signal_exiting_now" in daemon.output()
        left = await census(store, queue, [t.id for t in tasks])
        assert statuses(left) == {"processing": 2}  # left to lease expiry, by design
    finally:
        cluster.close()
    report("second_sigterm", exit_code=code, exit_after_second_signal_s=round(exit_s, 3))


async def test_task_arriving_after_sigterm_is_not_started(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """A task submitted while an idle daemon begins shutting down stays pending, never runs."""
    cluster = Cluster(tmp_path, redis_url, queue, workers=2, config=CONFIG)
    try:
        (daemon,) = await cluster.start(1)
        daemon.kill(signal.SIGTERM)
        await until(lambda: logged(daemon, "shutdown_requested"))
        # The idle fetcher is inside a blocking read (up to 500 ms): this entry reaches it.
        (task,) = await submit(store, specs("work", [{"ms": 1}], queue))
        assert await daemon.wait(timeout_s=10) == 0
        after = await store.get(task.id, queue)
        runs = read_executions(cluster.chaos_dir)
    finally:
        cluster.close()
    assert runs == {}
    assert after.status == Status.PENDING
