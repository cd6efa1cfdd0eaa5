"""Periodic occurrences are enqueued exactly once, whatever stalls and however many
daemons: forced interleavings of two schedulers on one Redis, and three real daemons
stopped and continued at random."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

import pytest

from taskd.config.schedule import Schedule
from taskd.engine.scheduler import Scheduler
from taskd.store import Store
from tests.conftest import eventually
from tests.enginetools import complete, take
from tests.procs import DaemonProcess

PERIOD_MS = 2000  # long enough for a few round trips inside one occurrence's window


class Stalling:
    """A store whose ``after``-th call (of any method) returns only once released: it
    stalls the scheduler using it between two round trips, as a stopped process would."""

    def __init__(self, store: Store, after: int) -> None:
        self._store = store
        self._after = after
        self._calls = 0
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not asyncio.iscoroutinefunction(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            self._calls += 1
            if self._calls == self._after:
                self.stalled.set()
                await self.release.wait()
            return result

        return call


async def _window_start(store: Store, earliest: int = 0) -> int:
    """Wait until Redis's clock is early in an occurrence window (at or after
    ``earliest``); return that occurrence's ms."""

    async def early() -> int:
        now = await store.time_ms()
        offset = now % PERIOD_MS
        return now - offset if now >= earliest and 50 <= offset < 600 else 0

    return int(await eventually(early, timeout_s=3 * PERIOD_MS / 1000, interval_s=0.01))


async def _created(store: Store, queue: str) -> Counter[int]:
    """How many tasks were created per occurrence (from the queue's event stream, which
    outlives the tasks)."""
    entries = await store.redis.xrange(store.keys(queue).events)
    return Counter(
        int(fields["name"].rsplit(" @ ", 1)[1])
        for _, fields in entries
        if fields.get("kind") == "created"
    )


async def _until(done: Awaitable[Any], stalled: asyncio.Event) -> None:
    """Wait until the scheduler either stalled or finished its tick."""
    task = asyncio.ensure_future(done)
    waiter = asyncio.ensure_future(stalled.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()


def _schedule(queue: str) -> Schedule:
    return Schedule(name=f"s-{queue}", task_type="t", every_s=PERIOD_MS / 1000, queue=queue)


async def _finish_and_expire(store: Store, queue: str) -> None:
    """Run every ready task to completion and expire it (its unique key dies with it)."""
    for task in await take(store, queue, "c", 100):
        await complete(store, task, None)
    await store.expire(queue, retention_ms=0)


@pytest.mark.parametrize("stall_after", [1, 2, 3])
async def test_a_stalled_scheduler_never_enqueues_an_occurrence_twice(
    store: Store, queue: str, stall_after: int
) -> None:
    """A scheduler stalled after any of its round trips, while another enqueues the
    occurrence and the task finishes and expires, does not enqueue it again."""
    schedule = _schedule(queue)
    other = Scheduler(store, [schedule])
    first_seen = await _window_start(store)
    await other.tick()  # first seen: marks this occurrence without running it
    gated = Stalling(store, stall_after)
    stalled = Scheduler(cast(Store, gated), [schedule])
    occurrence = await _window_start(store, first_seen + PERIOD_MS)
    late = asyncio.ensure_future(stalled.tick())
    await _until(late, gated.stalled)
    await other.tick()
    await _finish_and_expire(store, queue)
    gated.release.set()
    await late
    assert (await _created(store, queue))[occurrence] == 1


async def test_a_new_schedule_seen_on_both_sides_of_a_boundary_skips_nothing(
    store: Store, queue: str
) -> None:
    """Two schedulers that first see a schedule on either side of an occurrence boundary
    (the first stalled in between) still enqueue that next occurrence, once."""
    schedule = _schedule(queue)
    gated = Stalling(store, 2)
    first = Scheduler(cast(Store, gated), [schedule])
    second = Scheduler(store, [schedule])
    seen_at = await _window_start(store)
    early = asyncio.ensure_future(first.tick())
    await _until(early, gated.stalled)
    await _window_start(store, seen_at + PERIOD_MS)
    await second.tick()
    gated.release.set()
    await early
    await first.tick()
    await second.tick()
    created = await _created(store, queue)
    assert created == Counter({seen_at + PERIOD_MS: 1})


async def _stop_and_continue_at_random(
    daemons: list[DaemonProcess], seconds: float, rng: random.Random
) -> None:
    """SIGSTOP daemons for 0.2-3 s at random times, never all at once, then SIGCONT all."""
    stopped: dict[int, float] = {}
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            for i, until in list(stopped.items()):
                if now >= until:
                    daemons[i].kill(signal.SIGCONT)
                    del stopped[i]
            if len(stopped) < len(daemons) - 1 and rng.random() < 0.3:
                i = rng.choice([j for j in range(len(daemons)) if j not in stopped])
                daemons[i].kill(signal.SIGSTOP)
                stopped[i] = now + rng.uniform(0.2, 3.0)
            await asyncio.sleep(0.1)  # the pace of the chaos, not a synchronisation
    finally:
        for i in stopped:
            daemons[i].kill(signal.SIGCONT)


@pytest.mark.slow
async def test_three_daemons_stopped_at_random_enqueue_every_occurrence_once(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """Three daemons with a one-second schedule, each stopped and continued at random
    (one always running) while tasks finish and expire within a second: every occurrence
    from the first to the last is enqueued exactly once."""
    config = tmp_path / "taskd.toml"
    config.write_text(
        f'[[schedule]]\nname = "tick-{queue}"\ntask_type = "sleepy"\nevery_s = 1\n'
        f'queue = "{queue}"\npayload = {{ s = 0 }}\n'
    )
    args = ("--config", str(config), "--redis-url", redis_url)
    args += ("--handlers", "tests.daemon_handlers", "--queues", queue)
    env = {"TASKD_RETENTION_S": "0.5", "TASKD_SWEEP_INTERVAL_S": "0.1"}
    daemons = [DaemonProcess(tmp_path / f"d{i}", *args, env=env) for i in range(3)]
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    try:
        await asyncio.gather(*(d.ready(timeout_s=60) for d in daemons))
        await _stop_and_continue_at_random(daemons, 20, random.Random(seed))
        last = await store.time_ms() // 1000 * 1000

        async def reached() -> Counter[int]:
            created = await _created(store, queue)
            return created if max(created, default=0) > last else Counter()

        created = await eventually(reached, timeout_s=10)
    finally:
        for d in daemons:
            d.close()
    occurrences = sorted(created)
    print(f"{len(occurrences)} occurrences")
    assert set(created.values()) == {1}
    assert occurrences == list(range(occurrences[0], occurrences[-1] + 1, 1000))
    assert len(occurrences) >= 15
