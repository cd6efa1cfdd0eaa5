"""The worker-side scripts through Store, on real Redis: every state change safe to repeat
when its reply was lost, consumer removal atomic, wake-ups bounded, reclaims at the front."""

from __future__ import annotations

import orjson

from taskd.model import Status, make_spec
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


async def test_a_cancel_between_delivery_and_reserve_counts_depth_out_once(
    store: Store, queue: str
) -> None:
    """A task cancelled after a blocking read delivered it but before fetch.lua took it
    leaves the depth counter equal to the entries really waiting (it was counted out
    twice: by cancel.lua and by fetch.lua)."""
    specs = [make_spec("t", {"i": i}, queue=queue, priority=10) for i in range(3)]
    (first, _), _, _ = await store.submit(specs)
    delivered = await store.wait_ready([queue], "c", 100)
    assert [triple[2] for triple in delivered[queue]] == [first.id]
    assert await store.cancel(first.id) == "cancelled"
    fetched = await store.reserve_ready(queue, "c", 0, "", delivered[queue])
    assert fetched.tasks == []
    depth = await store.redis.hget(store.keys(queue).depth, "10")
    assert int(depth) == 2
    assert len(await take(store, queue, "c", 10)) == 2


async def test_purge_cancels_tasks_delivered_or_reserved_but_not_started(
    store: Store, queue: str
) -> None:
    """Purge cancels every task not yet started wherever it sits: one a blocking read
    delivered, one reserved in a worker's buffer, one handed back to the front; a
    running one is left alone."""
    submitted = await store.submit([make_spec("t", {"i": i}, queue=queue) for i in range(4)])
    (running,) = await take(store, queue, "w", 1)
    (reserved,) = (await store.reserve_ready(queue, "w", 1)).tasks
    (handed,) = (await store.reserve_ready(queue, "gone", 1)).tasks
    await store.release(handed)  # to the front
    delivered = await store.wait_ready([queue], "c", 100)
    assert await store.purge(queue) == 3
    assert (await store.reserve_ready(queue, "c", 10, "", delivered[queue])).tasks == []
    statuses = {t.id: (await store.get(t.id)).status for t, _ in submitted}
    assert statuses.pop(running.id) == Status.PROCESSING
    assert set(statuses.values()) == {Status.CANCELLED}
    assert reserved.id in statuses
    stats = await store.stats(queue)
    assert (stats["cancelled"], stats["reserved"], stats["pending"]) == (3, 0, 0)
