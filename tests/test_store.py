"""The Lua scripts through Store, on real Redis: atomic transitions, fencing, counters."""

from __future__ import annotations

import asyncio

import pytest

from taskd.engine.fetcher import limits_json
from taskd.errors import StaleAttempt, TaskNotFound, WrongState
from taskd.model import Status, make_spec
from taskd.paging import Cursor
from taskd.store import Store
from taskd.store.enqueue import FIRST_CHUNK, SUBMIT_CHUNK
from taskd.store.enqueue import chunked as _chunked
from taskd.store.replies import ReplyCode
from tests.conftest import eventually
from tests.enginetools import complete, take


async def test_submit_returns_pending_tasks_with_fields(store: Store, queue: str) -> None:
    """A submitted task comes back pending with the given fields and Redis timestamps."""
    ((task, created),) = await store.submit(
        [make_spec("email", {"to": "a@b"}, name="n", priority=7, queue=queue)]
    )
    assert created
    assert task.status == Status.PENDING
    assert (task.name, task.priority, task.queue, task.payload) == ("n", 7, queue, {"to": "a@b"})
    assert task.created_at > 0
    assert task.sid


async def test_fetch_is_strict_priority_then_fifo(store: Store, queue: str) -> None:
    """Fetch returns priority 10 first and, within a level, the order of submission."""
    specs = [
        make_spec("t", {"i": i}, priority=p, queue=queue)
        for i, p in enumerate([1, 5, 10, 5, 1, 10, 3])
    ]
    await store.submit(specs)
    tasks = await take(store, queue, "c", 7)
    assert [(t.priority, t.payload["i"]) for t in tasks] == [
        (10, 2),
        (10, 5),
        (5, 1),
        (5, 3),
        (3, 6),
        (1, 0),
        (1, 4),
    ]
    assert all(t.status == Status.PROCESSING and t.attempt == 1 for t in tasks)


async def test_a_batch_over_several_chunks_keeps_order_and_unique_keys(
    store: Store, queue: str
) -> None:
    """A batch longer than one enqueue script is written chunk by chunk, in order; a
    unique key repeated across a chunk boundary still names one task."""
    n = SUBMIT_CHUNK * 2 + 7
    specs = [make_spec("t", {"i": i}, queue=queue) for i in range(n)]
    specs[SUBMIT_CHUNK + 3] = make_spec("t", {"i": "dup"}, queue=queue, unique_key="k-1")
    specs[5] = make_spec("t", {"i": "first"}, queue=queue, unique_key="k-1")
    results = await store.submit(specs)
    assert [task.id for task, _ in results][:5] == [s.id for s in specs[:5]]
    first, repeat = results[5], results[SUBMIT_CHUNK + 3]
    assert first[1]
    assert not repeat[1]
    assert repeat[0].id == first[0].id
    assert (await store.stats(queue))["total"] == n - 1
    fetched = await take(store, queue, "c", n)
    assert [t.id for t in fetched] == [t.id for t, created in results if created]


async def test_unique_key_dedup_under_concurrent_submits(store: Store, queue: str) -> None:
    """50 concurrent submits with one unique key create exactly one task."""
    results = await asyncio.gather(
        *[
            store.submit([make_spec("t", {"n": i}, queue=queue, unique_key="order-42")])
            for i in range(50)
        ]
    )
    ids = {r[0][0].id for r in results}
    assert len(ids) == 1
    assert sum(1 for r in results if r[0][1]) == 1
    assert (await store.stats(queue))["total"] == 1


async def test_stale_attempt_completion_is_refused(store: Store, queue: str) -> None:
    """A completion from an attempt that was reclaimed is refused and changes nothing."""
    await store.submit([make_spec("t", queue=queue, max_retries=3)])
    (held,) = await take(store, queue, "dead-worker", 1)
    reclaimed = await store.reclaim(queue, held.priority, "sup", 0, "0-0")
    assert reclaimed.requeued == [held.id]
    (again,) = await take(store, queue, "live-worker", 1)
    assert again.attempt == held.attempt + 1
    with pytest.raises(StaleAttempt):
        await complete(store, held, {"late": True})
    with pytest.raises(StaleAttempt):
        await store.fail(held, "late", "retry")
    assert await store.progress(held, 50, "late") == ReplyCode.STALE
    await complete(store, again, {"ok": True})
    final = await store.get(held.id)
    assert final.status == Status.COMPLETED
    assert final.result == {"ok": True}
    assert final.retry_count == 1


async def test_reclaim_past_max_retries_fails_as_worker_lost(store: Store, queue: str) -> None:
    """A task whose holder dies more often than max_retries allows fails as worker lost."""
    await store.submit([make_spec("t", queue=queue, max_retries=0)])
    (held,) = await take(store, queue, "dead-worker", 1)
    result = await store.reclaim(queue, held.priority, "sup", 0, "0-0")
    assert result.failed == [held.id]
    task = await store.get(held.id)
    assert task.status == Status.FAILED
    assert task.error is not None
    assert "worker lost" in task.error


async def test_reclaim_skips_entries_inside_their_lease(store: Store, queue: str) -> None:
    """Entries idle for less than the lease are left with their holder."""
    await store.submit([make_spec("t", queue=queue)])
    (held,) = await take(store, queue, "live", 1)
    result = await store.reclaim(queue, held.priority, "sup", 60_000, "0-0")
    assert result.requeued == []
    assert result.failed == []
    assert (await store.get(held.id)).status == Status.PROCESSING


async def test_reclaim_reports_entries_deleted_while_pending(store: Store, queue: str) -> None:
    """XAUTOCLAIM's deleted-entry ids are reported, not crashed on (Redis >= 7)."""
    await store.submit([make_spec("t", queue=queue)])
    (held,) = await take(store, queue, "dead", 1)
    await store.redis.xdel(store.keys(queue).stream(held.priority), held.sid)
    result = await store.reclaim(queue, held.priority, "sup", 0, "0-0")
    assert result.deleted == [held.sid]


async def test_reclaim_cursor_covers_a_long_pending_list(store: Store, queue: str) -> None:
    """Following the cursor reclaims every entry of a pending list longer than COUNT."""
    await store.submit([make_spec("t", queue=queue) for _ in range(250)])
    held = await take(store, queue, "dead", 250)
    assert len(held) == 250
    cursor, requeued = "0-0", []
    for _ in range(10):
        result = await store.reclaim(queue, 5, "sup", 0, cursor, count=30)
        requeued += result.requeued
        cursor = result.cursor
        if cursor == "0-0":
            break
    assert sorted(requeued) == sorted(t.id for t in held)


async def test_cancel_pending_is_immediate_and_skipped_by_fetch(store: Store, queue: str) -> None:
    """A cancelled pending task is never started."""
    ((task, _),) = await store.submit([make_spec("t", queue=queue)])
    assert await store.cancel(task.id) == "cancelled"
    assert await take(store, queue, "c", 10) == []
    assert (await store.get(task.id)).status == Status.CANCELLED
    with pytest.raises(WrongState):
        await store.cancel(task.id)


async def test_retry_by_hand_requeues_failed_task(store: Store, queue: str) -> None:
    """retry() sends a failed task back to pending with attempts reset; it runs again."""
    await store.submit([make_spec("t", queue=queue, max_retries=0)])
    (held,) = await take(store, queue, "c", 1)
    assert await store.fail(held, "boom", "retry") == "failed"
    again = await store.retry(held.id)
    assert again.status == Status.PENDING
    assert again.retry_count == 0
    (second,) = await take(store, queue, "c", 1)
    assert second.id == held.id
    assert second.attempt == 2
    with pytest.raises(WrongState):
        await store.retry(held.id)


async def test_delayed_task_promoted_only_when_due(store: Store, queue: str) -> None:
    """A task with delay_s is scheduled, not fetchable, until promote finds it due."""
    ((task, _),) = await store.submit([make_spec("t", queue=queue, delay_s=0.3)])
    assert task.status == Status.SCHEDULED
    moved, wait_ms = await store.promote(queue)
    assert moved == 0
    assert 0 < wait_ms <= 300
    assert await take(store, queue, "c", 1) == []

    async def promoted() -> bool:
        return (await store.promote(queue))[0] == 1

    await eventually(promoted)
    (started,) = await take(store, queue, "c", 1)
    assert started.id == task.id
    assert started.started_at is not None
    assert task.run_at is not None
    assert started.started_at >= task.run_at


async def test_unknown_id_is_not_found(store: Store) -> None:
    """get() of an unknown or malformed id raises TaskNotFound."""
    with pytest.raises(TaskNotFound):
        await store.get("0" * 32)
    with pytest.raises(TaskNotFound):
        await store.get("../etc")


async def test_listing_pages_newest_first_without_gaps(store: Store, queue: str) -> None:
    """Paging with the cursor visits every task once, newest first."""
    submitted = [
        t.id
        for t, _ in await store.submit([make_spec("t", {"i": i}, queue=queue) for i in range(57)])
    ]
    seen: list[str] = []
    cursor: Cursor | None = None
    while True:
        page, cursor = await store.list_tasks(limit=10, cursor=cursor, queue=queue)
        seen += [t.id for t in page]
        if not page or cursor is None:
            break
    assert seen == list(reversed(submitted))


async def test_expire_removes_every_key_of_finished_tasks(store: Store, queue: str) -> None:
    """After retention, a finished task leaves no key behind and counters drop."""
    await store.submit([make_spec("t", queue=queue, unique_key=f"u{i}") for i in range(5)])
    for task in await take(store, queue, "c", 5):
        await complete(store, task, None)
    assert await store.expire(queue, retention_ms=0) == 5
    k = store.keys(queue)
    leftovers = [key async for key in store.redis.scan_iter(match=f"{k.tag}:task:*")]
    leftovers += [key async for key in store.redis.scan_iter(match=f"{k.tag}:unique:*")]
    assert leftovers == []
    assert await store.redis.zcard(k.index) == 0
    assert await store.redis.zcard(k.finished) == 0
    stats = await store.stats(queue)
    assert stats["total"] == 0
    assert stats["completed"] == 0


async def test_trim_keeps_pending_entries(store: Store, queue: str) -> None:
    """Trimming removes acknowledged entries but never one that is still pending."""
    await store.submit([make_spec("t", queue=queue) for _ in range(20)])
    tasks = await take(store, queue, "c", 20)
    for task in tasks[:15]:
        await complete(store, task, None)
    stream = store.keys(queue).stream(5)
    assert await store.trim(queue) == 15
    assert await store.redis.xlen(stream) == 5
    for task in tasks[15:]:
        await complete(store, task, None)
    assert await store.trim(queue) == 5


async def test_scripts_reload_after_script_flush(store: Store, queue: str) -> None:
    """Scripts Redis forgot (restart, SCRIPT FLUSH) are loaded again transparently."""
    await store.redis.script_flush()
    ((task, created),) = await store.submit([make_spec("t", queue=queue)])
    assert created
    await store.redis.script_flush()
    (held,) = await take(store, queue, "c", 1)
    await store.redis.script_flush()
    assert await store.complete_many([(held, b"1")]) == ["completed"]
    assert (await store.get(task.id)).status == Status.COMPLETED


async def test_a_long_batch_survives_forgotten_scripts(store: Store, queue: str) -> None:
    """A batch streamed chunk by chunk reloads scripts Redis forgot and writes every task
    exactly once, in order."""
    await store.redis.script_flush()
    specs = [make_spec("t", {"i": i}, queue=queue) for i in range(SUBMIT_CHUNK * 3 + 1)]
    results = await store.submit(specs)
    assert [task.id for task, _ in results] == [s.id for s in specs]
    assert all(created for _, created in results)
    assert (await store.stats(queue))["pending"] == len(specs)
    fetched = await take(store, queue, "c", len(specs) + 10)
    assert [t.payload["i"] for t in fetched] == list(range(len(specs)))


def test_a_batch_is_written_in_short_first_chunks_then_full_ones() -> None:
    """The first scripts are short, so workers see a big batch's first tasks early; every
    task is in exactly one chunk, in order."""
    assert SUBMIT_CHUNK == 4 * FIRST_CHUNK  # (the sizes below double up to SUBMIT_CHUNK)
    indexes = list(range(FIRST_CHUNK * 3 + 2 * SUBMIT_CHUNK + 7))
    chunks = _chunked(indexes)
    sizes = [FIRST_CHUNK, 2 * FIRST_CHUNK, SUBMIT_CHUNK, SUBMIT_CHUNK, 7]
    assert [len(c) for c in chunks] == sizes
    assert [i for chunk in chunks for i in chunk] == indexes
    assert _chunked([3, 1]) == [[3, 1]]


async def test_hand_retry_of_a_deferred_task_honours_the_limit(store: Store, queue: str) -> None:
    """A task a rate limit deferred, then cancelled and retried by hand, is checked
    against the limit again (its old reservation does not let it skip the queue)."""
    limits = limits_json(queue, [("x", 0.1, 1)])  # one start per 10 s
    first, second = (
        t
        for t, _ in await store.submit(
            [
                make_spec("x", queue=queue),
                make_spec("x", queue=queue),
            ]
        )
    )
    (started,) = await take(store, queue, "c", 10, limits=limits)
    assert started.id == first.id
    assert (await store.get(second.id)).status == Status.SCHEDULED  # deferred ~10 s
    await store.cancel(second.id)
    await store.retry(second.id)
    assert await take(store, queue, "c", 10, limits=limits) == []
    assert (await store.get(second.id)).status == Status.SCHEDULED


async def test_verify_depth_corrects_a_drift_either_way(store: Store, queue: str) -> None:
    """A depth counter off in either direction is set to the entries really waiting and
    the correction is reported; an exact one is left alone."""
    await store.submit([make_spec("t", queue=queue, priority=p) for p in (3, 3, 7, 9)])
    depth = store.keys(queue).depth
    await store.redis.hset(depth, mapping={"3": 9, "7": 0})
    assert await store.verify_depth(queue) == {3: (9, 2), 7: (0, 1)}
    assert await store.verify_depth(queue) == {}
    counts = await store.depth_by_priority(queue)
    assert (counts[3], counts[7], counts[9]) == (2, 1, 1)


async def test_verify_depth_counts_entries_a_blocking_read_delivered(
    store: Store, queue: str
) -> None:
    """An entry a blocking read delivered but fetch has not taken yet still counts, so
    verifying in between does not push the counter below the truth."""
    await store.ensure_queue(queue)
    ((task, _),) = await store.submit([make_spec("t", queue=queue)])
    delivered = await store.wait_ready([queue], "c", 1000)
    assert await store.verify_depth(queue) == {}
    (started,) = (await store.reserve_ready(queue, "c", 1, "", delivered[queue])).tasks
    assert started.id == task.id
    assert await store.verify_depth(queue) == {}
    assert (await store.depth_by_priority(queue))[5] == 0


async def test_an_exhausted_level_keeps_the_count_of_an_entry_delivered_elsewhere(
    store: Store, queue: str
) -> None:
    """A fetch that empties a level while another consumer's blocking read holds one of its
    entries leaves the counter right, so a task submitted next is fetched."""
    await store.ensure_queue(queue)
    await store.submit([make_spec("t", queue=queue) for _ in range(2)])
    delivered = await store.wait_ready([queue], "c1", 1000)
    assert len(await take(store, queue, "c2", 10)) == 1
    ((late, _),) = await store.submit([make_spec("t", queue=queue)])
    assert len((await store.reserve_ready(queue, "c1", 1, "", delivered[queue])).tasks) == 1
    assert [t.id for t in await take(store, queue, "c2", 10)] == [late.id]


async def test_a_cancel_between_delivery_and_start_counts_the_task_out_once(
    store: Store, queue: str
) -> None:
    """A task cancelled after a blocking read delivered it, before fetch took it, is
    counted out once: the depth counter still counts the other task waiting."""
    await store.ensure_queue(queue)
    (first, _), _ = await store.submit([make_spec("t", queue=queue) for _ in range(2)])
    delivered = await store.wait_ready([queue], "c", 1000)
    await store.cancel(first.id)
    assert (await store.reserve_ready(queue, "c", 0, "", delivered[queue])).tasks == []
    assert await store.redis.hget(store.keys(queue).depth, "5") == "1"
