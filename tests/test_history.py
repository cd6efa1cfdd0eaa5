"""Per-minute history counted inside the transition scripts, on real Redis."""

from __future__ import annotations

import re
from importlib import resources

from taskd.history import RUN_BOUNDS_MS, SLOTS, Counts, percentile, sum_by_minute
from taskd.model import make_spec
from taskd.store import Store
from tests.enginetools import take


async def _counts(store: Store, queue: str | None, task_type: str | None = None) -> Counts:
    """Everything counted in the last two minutes (a test may straddle a minute)."""
    now = await store.redis_minute()
    total = Counts()
    for counts in sum_by_minute(await store.history(now - 1, now, queue, task_type)).values():
        total.add(counts)
    return total


async def test_submitted_completed_and_failed_are_counted_per_task_type(
    store: Store, queue: str
) -> None:
    """Enqueue counts submitted, complete counts completed, a final failure counts failed
    (a retry does not), each under its task type and queue."""
    specs = [make_spec("a", {}, queue=queue, max_retries=0) for _ in range(3)]
    specs += [make_spec("b", {}, queue=queue, max_retries=1) for _ in range(2)]
    await store.submit(specs)
    tasks = {t.id: t for t in await take(store, queue, "c", 5)}
    a = [tasks[s.id] for s in specs[:3]]
    b = [tasks[s.id] for s in specs[3:]]
    await store.complete_many([(a[0], b"1"), (a[1], b"2"), (b[0], b"3")])
    assert await store.fail(a[2], "boom", "retry") == "failed"
    assert await store.fail(b[1], "busy", "retry") == "retrying"

    got = {t: await _counts(store, queue, t) for t in ("a", "b")}
    assert (got["a"].submitted, got["a"].completed, got["a"].failed) == (3, 2, 1)
    assert (got["b"].submitted, got["b"].completed, got["b"].failed) == (2, 1, 0)
    whole = await _counts(store, queue)
    assert (whole.submitted, whole.completed, whole.failed) == (5, 3, 1)
    assert sum(whole.runs) == 3


async def test_a_call_repeated_after_a_lost_reply_counts_once(store: Store, queue: str) -> None:
    """A completion, failure or unique submission sent again (its first reply was lost but
    it applied) is answered as the first was, or deduplicated, and counted exactly once."""
    first = make_spec("t", {}, queue=queue, unique_key="once", max_retries=0)
    await store.submit([first])
    await store.submit([make_spec("t", {}, queue=queue, unique_key="once")])
    other = make_spec("t", {}, queue=queue, max_retries=0)
    await store.submit([other])
    held = {t.id: t for t in await take(store, queue, "c", 2)}
    done, failing = held[first.id], held[other.id]

    assert await store.complete_many([(done, b"1")]) == ["completed"]
    assert await store.complete_many([(done, b"1")]) == ["completed"]
    assert await store.fail(failing, "boom", "fail") == "failed"
    assert await store.fail(failing, "boom", "fail") == "failed"

    got = await _counts(store, queue, "t")
    assert (got.submitted, got.completed, got.failed, sum(got.runs)) == (2, 1, 1, 1)


async def test_a_task_failed_as_worker_lost_is_counted_failed(store: Store, queue: str) -> None:
    """A reclaim past max_retries (the holder died) counts one failure, and a second sweep
    over the same entry counts nothing more."""
    await store.submit([make_spec("t", {}, queue=queue, max_retries=0)])
    (held,) = await take(store, queue, "dead-worker", 1)
    assert (await store.reclaim(queue, held.priority, "sup", 0, "0-0")).failed == [held.id]
    assert (await store.reclaim(queue, held.priority, "sup", 0, "0-0")).failed == []
    got = await _counts(store, queue, "t")
    assert (got.submitted, got.completed, got.failed) == (1, 0, 1)


async def test_run_times_land_in_their_histogram_bucket(store: Store, queue: str) -> None:
    """A completion's run time (Redis now minus started_at) is counted in the log-spaced
    bucket holding it, and p50/p95 come out within that bucket."""
    specs = [make_spec("t", {}, queue=queue) for _ in range(20)]
    await store.submit(specs)
    tasks = await take(store, queue, "c", 20)
    seconds, _ = await store.redis.time()
    for i, task in enumerate(tasks):  # as if they started 3 s ago (19 of them) or 60 s ago
        ago_ms = 60_000 if i == 0 else 3_000
        await store.redis.hset(
            store.keys(queue).task(task.id), "started_at", seconds * 1000 - ago_ms
        )
    await store.complete_many([(t, b"null") for t in tasks])

    runs = (await _counts(store, queue)).runs
    assert runs[RUN_BOUNDS_MS.index(5_000)] == 19  # (2 s, 5 s]
    assert runs[RUN_BOUNDS_MS.index(100_000)] == 1  # (50 s, 100 s]
    p50, p95 = percentile(runs, 0.5), percentile(runs, 0.95)
    assert p50 is not None
    assert 2_000 < p50 <= 5_000
    assert p95 is not None
    assert 2_000 < p95 <= 5_000


def test_percentile_interpolates_inside_the_bucket() -> None:
    """Percentiles of a histogram stay inside the bucket holding the rank; none when empty."""
    runs = [0] * SLOTS
    runs[RUN_BOUNDS_MS.index(100)] = 50  # (50, 100]
    runs[RUN_BOUNDS_MS.index(1_000)] = 50  # (500, 1000]
    assert percentile([0] * SLOTS, 0.5) is None
    p50, p95 = percentile(runs, 0.5), percentile(runs, 0.95)
    assert p50 == 100.0
    assert p95 is not None
    assert 500 < p95 < 1_000
    runs[-1] = 1_000  # longer than the last bound: answers the bound
    assert percentile(runs, 0.95) == float(RUN_BOUNDS_MS[-1])


def test_the_scripts_use_the_same_buckets_as_the_reader() -> None:
    """RUN_BOUNDS_MS in the Lua prelude equals taskd.history's (one layout, two languages)."""
    lua = (resources.files("taskd") / "scripts" / "_lib.lua").read_text()
    found = re.search(r"RUN_BOUNDS_MS = \{([^}]*)\}", lua)
    assert found
    assert tuple(int(v) for v in found.group(1).replace("\n", "").split(",")) == RUN_BOUNDS_MS


SIMULATE = """
local first, minutes = tonumber(ARGV[1]), tonumber(ARGV[2])
for m = first, first + minutes - 1 do
  local counts = {}
  history_add(counts, 'email', SUBMITTED, 3)
  history_run(counts, 'email', 40)
  history_add(counts, 'report_generation', SUBMITTED, 1)
  history_add(counts, 'report_generation', FAILED, 1)
  record_history(KEYS[1], KEYS[2], m * 60000, counts)
end
return redis.call('HLEN', KEYS[1])
"""


async def test_memory_stays_bounded_over_simulated_weeks(store: Store, queue: str) -> None:
    """Three simulated weeks of a queue busy every minute with two task types keep at most
    eight days of fields in two keys, both with an expiry (the real record_history is run
    with the script's time argument, minute by minute)."""
    k = store.keys(queue)
    source = (resources.files("taskd") / "scripts" / "_lib.lua").read_text() + SIMULATE
    start, week = 29_000_000, 7 * 24 * 60
    sizes = []
    for n in range(3):
        await store.redis.eval(source, 2, k.history, k.history_index, start + n * week, week)
        sizes.append(await store.redis.memory_usage(k.history))
    fields = await store.redis.hlen(k.history)
    assert fields == await store.redis.zcard(k.history_index)
    assert fields <= 2 * (8 * 24 * 60 + 8)
    oldest = await store.redis.zrange(k.history_index, 0, 0, withscores=True)
    assert oldest[0][1] >= start + 3 * week - 8 * 24 * 60 - 8
    assert sizes[2] <= sizes[1] * 1.2  # a third week costs no more than the second
    assert sorted(await store.redis.keys(f"{k.tag}:*")) == sorted([k.history, k.history_index])
    assert 0 < await store.redis.ttl(k.history) <= 8 * 24 * 3600
    assert 0 < await store.redis.ttl(k.history_index) <= 8 * 24 * 3600
    print(f"history of one queue, two types, 8 days: {fields} fields, {sizes[2]} bytes")
