"""The prefetch buffer's order and its count of idle runners (no Redis needed: it is an
in-process structure)."""

from __future__ import annotations

import asyncio

from taskd.engine.buffer import PrefetchBuffer
from taskd.model import Status, Task


def task(task_id: str, priority: int, status: Status = Status.RESERVED) -> Task:
    """A fetched task of the given priority and status."""
    return Task(task_id, task_id, "t", "default", priority, {}, status)


async def test_started_tasks_first_then_most_urgent_then_fetch_order() -> None:
    """Tasks the fetch started for idle runners come out before every reserved one;
    reserved ones most urgent first, in fetch order within a level."""
    buffer = PrefetchBuffer()
    buffer.put([task("low", 1), task("high-a", 9), task("high-b", 9)])
    buffer.put([task("started", 2, Status.PROCESSING)])
    taken = [await buffer.take() for _ in range(4)]
    assert [t.id for t in taken if t] == ["started", "high-a", "high-b", "low"]
    assert buffer.least_urgent() is None


async def test_idle_runners_count_waiting_runners_less_tasks_already_there() -> None:
    """idle_runners is how many tasks the next fetch may start: runners waiting on the
    buffer, less the tasks put in for them that they have not taken yet."""
    buffer = PrefetchBuffer()
    runners = [asyncio.create_task(buffer.take()) for _ in range(3)]
    await asyncio.sleep(0)  # the runners reach their wait
    assert buffer.idle_runners() == 3
    buffer.put([task("a", 5, Status.PROCESSING)])
    assert buffer.idle_runners() == 2  # one is already served, even before it wakes
    assert "a" in buffer
    await asyncio.sleep(0)
    assert "a" not in buffer
    buffer.stop_runners(2)
    assert {t.id if t else None for t in await asyncio.gather(*runners)} == {"a", None}


async def test_take_all_empties_the_buffer_for_shutdown() -> None:
    """take_all hands back every waiting task (most urgent first) and forgets them."""
    buffer = PrefetchBuffer()
    buffer.put([task("a", 3), task("b", 7)])
    assert [t.id for t in buffer.take_all()] == ["b", "a"]
    assert "a" not in buffer
    assert buffer.least_urgent() is None
