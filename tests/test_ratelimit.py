"""Shared rate limits (fetch.lua's cell-rate check) measured by Redis's start timestamps."""

from __future__ import annotations

import itertools

from taskd.engine.fetcher import limits_json
from taskd.model import Task, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.enginetools import take


async def _start_all(store: Store, queue: str, limits: str, count: int) -> list[Task]:
    """Promote and fetch in a loop (one consumer) until ``count`` tasks started."""
    started: list[Task] = []

    async def more() -> bool:
        await store.promote(queue)
        started.extend(await take(store, queue, "c", 50, limits=limits))
        return len(started) >= count

    await eventually(more, timeout_s=20, interval_s=0.002)
    return started


async def test_queue_limit_deferral_books_the_type_slot_at_the_real_start(
    store: Store, queue: str
) -> None:
    """A task deferred by the queue's limit books its type's slot at its actual start, so
    two starts of a type limited to 2/s are never closer than its 500 ms interval."""
    limits = limits_json(queue, [("x", 2.0, 1), (f"queue:{queue}", 20.0, 1)])
    specs = [make_spec("y", queue=queue) for _ in range(10)]
    specs += [make_spec("x", queue=queue) for _ in range(3)]
    await store.submit(specs)
    started = await _start_all(store, queue, limits, len(specs))
    x_starts = sorted(t.started_at for t in started if t.task_type == "x")
    gaps = [b - a for a, b in itertools.pairwise(x_starts)]
    # 500 ms less what a late start may take off (a slow poll on a busy machine); the
    # defect started them 50 ms apart.
    assert min(gaps) >= 400, gaps


async def test_type_limit_deferral_books_the_queue_slot_at_the_real_start(
    store: Store, queue: str
) -> None:
    """A task deferred by its type's limit takes a queue slot at its actual start: other
    types' tasks fill the queue's slots in between, never the same one."""
    limits = limits_json(queue, [("x", 2.0, 1), (f"queue:{queue}", 5.0, 1)])
    specs = [make_spec("x", queue=queue) for _ in range(3)]
    specs += [make_spec("y", queue=queue) for _ in range(6)]
    await store.submit(specs)
    started = await _start_all(store, queue, limits, len(specs))
    all_starts = sorted(t.started_at for t in started)
    gaps = [b - a for a, b in itertools.pairwise(all_starts)]
    assert min(gaps) >= 100, gaps  # 200 ms less a late start; the defect gave 0


async def test_a_slow_type_does_not_hold_back_the_rest_of_its_queue(
    store: Store, queue: str
) -> None:
    """Tasks deferred by a slow type's limit do not book the queue's slots ahead: other
    types keep the queue's own rate meanwhile (all of them start before the slow type's
    third task)."""
    limits = limits_json(queue, [("x", 2.0, 1), (f"queue:{queue}", 20.0, 1)])
    specs = [make_spec("x", queue=queue) for _ in range(4)]
    specs += [make_spec("y", queue=queue) for _ in range(10)]
    await store.submit(specs)
    started = await _start_all(store, queue, limits, len(specs))
    x_starts = sorted(t.started_at for t in started if t.task_type == "x")
    y_starts = sorted(t.started_at for t in started if t.task_type == "y")
    assert y_starts[-1] < x_starts[2]
