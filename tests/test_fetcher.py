"""The fetcher on real Redis: what one wake-up of an idle pool starts."""

from __future__ import annotations

import asyncio
from typing import Any

from taskd.engine.fetcher import Fetcher
from taskd.model import Status, make_spec
from taskd.store import Store


async def test_a_wake_up_starts_the_whole_burst_not_one_task(store: Store, queue: str) -> None:
    """The blocking read that wakes an idle pool delivers one entry; the reserve call
    behind it fills the room, so a batch submitted to an idle pool is taken in one trip."""
    fetcher = Fetcher(store, f"test:{queue}:fetcher", [queue], block_ms=50)
    assert await fetcher.fetch(8, []) == []  # nothing yet: the queue is now known empty
    fetcher.block_ms = 10_000
    waiting = asyncio.create_task(fetcher.fetch(8, []))  # straight to the blocking read
    submitted = await store.submit([make_spec("t", {"i": i}, queue=queue) for i in range(5)])
    started = await asyncio.wait_for(waiting, 10)
    assert sorted(t.id for t in started) == sorted(t.id for t, _ in submitted)
    assert {t.status for t in started} == {Status.RESERVED}
    assert (await store.stats(queue))["reserved"] == 5


async def test_a_wake_up_never_starts_more_than_the_room(store: Store, queue: str) -> None:
    """A wake-up whose burst exceeds the room reserves only the room; the rest stay ready."""
    fetcher = Fetcher(store, f"test:{queue}:fetcher", [queue], block_ms=50)
    assert await fetcher.fetch(3, []) == []
    fetcher.block_ms = 10_000
    waiting = asyncio.create_task(fetcher.fetch(3, []))
    await store.submit([make_spec("t", {"i": i}, queue=queue) for i in range(7)])
    assert len(await asyncio.wait_for(waiting, 10)) == 3
    stats = await store.stats(queue)
    assert (stats["reserved"], stats["pending"]) == (3, 4)


async def test_a_wake_up_over_several_levels_takes_only_the_room(store: Store, queue: str) -> None:
    """A blocking read that delivers one entry of each of ten levels at once takes only as
    many as the pool has room for, the most urgent; the others stay ready."""
    fetcher = Fetcher(store, f"test:{queue}:fetcher", [queue], block_ms=50)
    assert await fetcher.fetch(3, []) == []  # the queue is now known empty
    await store.submit([make_spec("t", queue=queue, priority=p) for p in range(1, 11)])
    taken = await fetcher.fetch(3, [])
    assert sorted(t.priority for t in taken) == [8, 9, 10]
    stats = await store.stats(queue)
    assert stats["pending"] == 7
    rest = await fetcher.fetch(10, [])
    assert sorted(t.priority for t in rest) == list(range(1, 8))


async def test_after_a_short_wake_up_the_next_fetch_blocks_without_looking(
    store: Store, queue: str
) -> None:
    """A wake-up whose reserve call took less than the room saw the queue drained (the
    call reads past what was delivered), so the next fetch goes straight to the blocking
    read: one fetch script per wake-up of an idle pool, not a second, empty one."""
    calls: list[str] = []
    blocked = asyncio.Event()
    reserve, wait = store.reserve_ready, store.wait_ready

    async def reserve_counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("reserve")
        return await reserve(*args, **kwargs)

    async def wait_noted(*args: Any, **kwargs: Any) -> Any:
        calls.append("wait")
        blocked.set()
        return await wait(*args, **kwargs)

    store.reserve_ready = reserve_counted  # type: ignore[method-assign]
    store.wait_ready = wait_noted  # type: ignore[method-assign]
    fetcher = Fetcher(store, f"test:{queue}:fetcher", [queue], block_ms=10_000)
    for _ in range(2):
        calls.clear()
        blocked.clear()
        waiting = asyncio.create_task(fetcher.fetch(8, []))
        await asyncio.wait_for(blocked.wait(), 10)
        (task, _), *_ = await store.submit([make_spec("t", queue=queue)])
        (woken,) = await asyncio.wait_for(waiting, 10)
        assert woken.id == task.id
    assert calls == ["wait", "reserve"]  # the second fetch blocked at once, then reserved


async def test_fetch_survives_forgotten_scripts_and_killed_connections(
    store: Store, queue: str
) -> None:
    """The fetch's held connection reloads a script Redis forgot (SCRIPT FLUSH) and
    replaces a connection Redis closed while it rested: each task is reserved once."""
    fetcher = Fetcher(store, f"test:{queue}:fetcher", [queue], block_ms=50)
    submitted = [t for t, _ in await store.submit([make_spec("t", queue=queue) for _ in range(3)])]
    taken = await fetcher.fetch(1, [])
    await store.redis.script_flush()
    taken += await fetcher.fetch(1, [])
    await store.redis.client_kill_filter(_type="normal", skipme=True)
    taken += await fetcher.fetch(1, [])
    assert [t.id for t in taken] == [t.id for t in submitted]
    assert (await store.stats(queue))["reserved"] == 3
