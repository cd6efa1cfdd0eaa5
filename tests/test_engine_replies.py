"""The worker-side scripts through Store, on real Redis: every state change safe to repeat
when its reply was lost, consumer removal atomic, wake-ups bounded, reclaims at the front."""

from __future__ import annotations

import orjson

from taskd.model import make_spec
from taskd.store import Store
from tests.enginetools import take


async def test_a_completion_applied_twice_reports_success(store: Store, queue: str) -> None:
    """A completion written again after its reply was lost (applied the first time) is a
    success, not a refused stale attempt; the counters move once."""
    await store.submit([make_spec("t", queue=queue)])
    (held,) = await take(store, queue, "w", 1)
    result = orjson.dumps({"ok": True})
    assert await store.complete_many([(held, result)]) == ["completed"]
    assert await store.complete_many([(held, result)]) == ["completed"]
    stats = await store.stats(queue)
    assert (stats["completed"], stats["processing"], stats["completed_total"]) == (1, 0, 1)


async def test_a_failure_applied_twice_reports_the_same_status(store: Store, queue: str) -> None:
    """A failure written again after a lost reply returns the status the first write set."""
    await store.submit([make_spec("t", queue=queue, max_retries=0)])
    (held,) = await take(store, queue, "w", 1)
    assert await store.fail(held, "boom", "retry") == "failed"
    assert await store.fail(held, "boom", "retry") == "failed"
    stats = await store.stats(queue)
    assert (stats["failed"], stats["processing"], stats["failed_total"]) == (1, 0, 1)


async def test_removing_a_consumer_keeps_one_that_holds_entries(store: Store, queue: str) -> None:
    """Removing a consumer checks and deletes in one step: a consumer that holds an entry
    (it fetched after housekeeping looked) keeps it, so its task is never orphaned."""
    await store.submit([make_spec("t", queue=queue)])
    (held,) = await take(store, queue, "resumed:1:0", 1)
    await store.delete_consumer(queue, "resumed:1:0")
    pending = await store.redis.xpending(store.keys(queue).stream(held.priority), "taskd")
    assert pending["pending"] == 1
    assert "resumed:1:0" in await store.consumers(queue)


async def test_a_reclaimed_task_goes_to_the_front_of_its_level(store: Store, queue: str) -> None:
    """A task taken back from a dead holder is first in line again, not behind everything
    queued since it was first delivered."""
    await store.submit([make_spec("t", {"first": True}, queue=queue, max_retries=3)])
    (held,) = await take(store, queue, "dead", 1)
    await store.submit([make_spec("t", {"i": i}, queue=queue) for i in range(20)])
    reclaimed = await store.reclaim(queue, held.priority, "sup", 0, "0-0")
    assert reclaimed.requeued == [held.id]
    (again,) = await take(store, queue, "live", 1)
    assert again.id == held.id
    assert again.retry_count == 1
    assert (await store.stats(queue))["pending"] == 20
