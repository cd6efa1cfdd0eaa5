"""The event relay behind /ws: positions, bounded subscriptions, fan-out, throughput."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from taskd.engine.relay import (
    Batch,
    Relay,
    RelayConfig,
    StatsUpdate,
    Subscription,
    Throughput,
    decode_position,
    encode_position,
    resolve_position,
)
from taskd.errors import ValidationError
from taskd.model import make_spec
from taskd.store import Event, Store
from tests.conftest import eventually


def test_position_tokens_round_trip() -> None:
    """A per-queue position survives encode/decode; a bare id means 'from that moment'."""
    position = {"default": "1712000000000-3", "mail": "0-0"}
    assert decode_position(encode_position(position)) == position
    moment = resolve_position(decode_position("1712000000000-5"), ["a", "b"])
    assert moment == {"a": f"1711999999999-{2**64 - 1}", "b": f"1711999999999-{2**64 - 1}"}
    assert resolve_position({"a": "5-0"}, ["a", "b"]) == {"a": "5-0", "b": "0-0"}


@pytest.mark.parametrize("token", ["", "!!", "eyJhIjogNX0", "W10", "1-2-3"])
def test_malformed_positions_are_validation_errors(token: str) -> None:
    """Anything but a token or a stream id is refused, naming `since`."""
    with pytest.raises(ValidationError) as caught:
        decode_position(token)
    assert caught.value.field == "since"


async def test_full_subscription_finishes_at_once() -> None:
    """Past its limit a subscription is closed, emptied, and its consumer released."""
    sub = Subscription(limit=2)
    item = StatsUpdate({})
    assert sub.offer(item)
    assert sub.offer(item)
    assert not sub.offer(item)
    assert sub.overflowed
    assert sub.done.is_set()
    assert await sub.next() is None


def test_throughput_over_a_sliding_window() -> None:
    """Rates are counter deltas over the window; a counter reset starts over."""
    now = [0.0]
    rates = Throughput(window_s=60, clock=lambda: now[0])
    rates.observe(0, 0)
    now[0] = 10.0
    rates.observe(50, 10)
    assert rates.rates() == {"completed_per_s": 5.0, "failed_per_s": 1.0, "window_s": 10.0}
    now[0] = 100.0
    rates.observe(50, 10)
    assert rates.rates()["completed_per_s"] == 0.0
    now[0] = 101.0
    rates.observe(0, 0)
    assert rates.rates()["window_s"] == 0.0


@pytest.fixture
async def relay(store: Store) -> AsyncIterator[Relay]:
    """A running relay with a small subscriber buffer."""
    relay = Relay(
        store,
        RelayConfig(flush_interval_s=0.02, stats_interval_s=60, block_ms=50, subscriber_limit=3),
    )
    job = asyncio.create_task(relay.run())
    await asyncio.wait_for(relay.ready.wait(), 10)
    yield relay
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)


async def _next_batch(sub: Subscription) -> Batch:
    while True:
        item = await asyncio.wait_for(sub.next(), 10)
        if isinstance(item, Batch):
            return item


async def test_one_stalled_subscriber_is_dropped_the_other_served(
    relay: Relay, store: Store, queue: str
) -> None:
    """The relay never waits: a subscriber that stops reading is dropped, the other is not."""
    stalled, live = relay.subscribe(), relay.subscribe()
    for i in range(6):
        task = (await store.submit([make_spec("t", queue=queue, name=f"n{i}")]))[0][0]
        batch = await _next_batch(live)
        while task.id not in [e.task.get("id") for e in batch.events]:
            batch = await _next_batch(live)
    assert stalled.overflowed
    assert relay.dropped == 1
    assert relay.subscribers == 1


async def test_batches_coalesce_to_the_latest_event_per_task(
    relay: Relay, store: Store, queue: str
) -> None:
    """Events of one task within a flush collapse to its newest one."""
    sub = relay.subscribe()
    await store.submit([make_spec("t", queue=queue) for _ in range(50)])
    seen: list[str] = []
    while len(set(seen)) < 50:
        batch = await _next_batch(sub)
        ids = [str(e.task.get("id")) for e in batch.events if e.queue == queue]
        assert len(ids) == len(set(ids))
        seen += ids


async def test_an_idle_relay_reads_no_events_yet_a_late_subscriber_misses_none(
    relay: Relay, store: Store, queue: str
) -> None:
    """With nobody subscribed the relay follows the streams' ends without reading their
    events; a subscriber arriving later gets every event from its snapshot on."""
    reads = 0
    read_events = store.read_events

    async def counted(
        after: dict[str, str], count: int = 1000, block_ms: int | None = None
    ) -> list[Event]:
        nonlocal reads
        reads += 1
        return await read_events(after, count, block_ms)

    store.read_events = counted  # type: ignore[method-assign]
    await store.submit([make_spec("t", queue=queue) for _ in range(20)])
    ends = await store.last_event_ids([queue])

    async def followed() -> bool:
        await asyncio.sleep(0.02)
        return relay._state.position.get(queue) == ends[queue]

    await eventually(followed)
    assert reads == 0
    sub = relay.subscribe()
    snapshot = await store.last_event_ids([queue])
    sub.after = snapshot
    (late,) = await store.submit([make_spec("t", queue=queue, name="late")])
    batch = await _next_batch(sub)
    while late[0].id not in [e.task.get("id") for e in batch.events]:
        batch = await _next_batch(sub)
    assert reads > 0
