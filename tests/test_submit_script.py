"""submit.lua, the single submit's script, writes exactly what enqueue.lua writes."""

from __future__ import annotations

from typing import Any

from taskd.model import make_spec
from taskd.store import Store
from taskd.store.scripts import SCRIPT_NAMES

# What differs between two tasks created apart: their ids, queues, entries and times.
_OWN = {"id", "queue", "sid", "created_at", "updated_at", "ts"}


async def _created_event(store: Store, queue: str) -> dict[str, str]:
    ((_, fields),) = (await store.redis.xrange(store.keys(queue).events, count=1)) or [(0, {})]
    return {k: v for k, v in fields.items() if k not in _OWN}


async def _counters(store: Store, queue: str) -> dict[str, Any]:
    k = store.keys(queue)
    history = await store.redis.hgetall(k.history)
    return {
        "stats": await store.redis.hgetall(k.stats),
        "depth": await store.redis.hgetall(k.depth),
        "history": sorted(v for v in history.values()),
        "indexed": await store.redis.zcard(k.index),
    }


async def test_a_single_submit_writes_what_the_batch_script_writes(store: Store) -> None:
    """One task submitted alone (submit.lua) and the same task in a batch (enqueue.lua)
    leave the same hash, created event, counters, depth, history and index entry."""
    single, batched = "tsingle" + make_spec("t").id[:8], "tbatch" + make_spec("t").id[:8]
    spec = {"payload": {"to": "a@b"}, "name": "n", "priority": 7, "max_retries": 2}
    ((alone, _),) = await store.submit([make_spec("t", queue=single, **spec)])
    results = await store.submit(
        [make_spec("t", queue=batched, **spec), make_spec("u", queue=batched, priority=7)]
    )
    in_batch = results[0][0]
    hashes = [await store.redis.hgetall(store.keys(t.queue).task(t.id)) for t in (alone, in_batch)]
    assert [{k: v for k, v in h.items() if k not in _OWN} for h in hashes] == [
        {k: v for k, v in hashes[1].items() if k not in _OWN}
    ] * 2
    assert hashes[0]["sid"] == alone.sid
    assert hashes[0]["created_at"] == str(alone.created_at)
    assert await _created_event(store, single) == await _created_event(store, batched)
    counted = await _counters(store, single)
    assert counted == {
        "stats": {"total": "1", "submitted": "1", "pending": "1"},
        "depth": {"7": "1"},
        "history": ["1,0,0"],
        "indexed": 1,
    }
    assert (await _counters(store, batched))["stats"] == {
        "total": "2",
        "submitted": "2",
        "pending": "2",
    }
    assert (await store.get(alone.id)).to_api() == alone.to_api()


async def test_a_single_submit_keeps_index_order_within_a_millisecond(
    store: Store, queue: str
) -> None:
    """Single submits in quick succession are indexed in the order they were made (a
    strictly increasing score, shared with batches)."""
    created = [
        (await store.submit([make_spec("t", {"i": i}, queue=queue)]))[0][0] for i in range(30)
    ]
    created += [t for t, _ in await store.submit([make_spec("t", queue=queue) for _ in range(3)])]
    created.append((await store.submit([make_spec("t", queue=queue)]))[0][0])
    ordered = await store.redis.zrange(store.keys(queue).index, 0, -1)
    assert ordered == [t.id for t in created]


def test_submit_is_a_loaded_script() -> None:
    """The store loads submit.lua with the others (a client's first submit needs it)."""
    assert "submit" in SCRIPT_NAMES


async def test_a_single_plain_submit_runs_submit_lua(store: Store, queue: str) -> None:
    """Redis forgot its scripts: a plain single submit loads only submit.lua; one with a
    unique key or a delay needs the batch script."""
    shas = [store.script_sha("submit"), store.script_sha("enqueue")]
    await store.redis.script_flush()
    await store.submit([make_spec("t", queue=queue)])
    assert await store.redis.script_exists(*shas) == [True, False]
    await store.submit([make_spec("t", queue=queue, unique_key="k")])
    assert await store.redis.script_exists(*shas) == [True, True]
