"""The event relay: one reader of every queue's events stream per process, fanned out in memory.

Every state change writes one entry to its queue's capped events stream (see the scripts).
A process runs one :class:`Relay` that tails all of them with a blocking XREAD, whatever
the number of WebSocket clients, so Redis load does not grow with the audience. Events
are coalesced into batches at most every ``flush_interval_s`` (the latest event per task
wins within a batch) and handed to each subscriber's bounded buffer without waiting: a
subscriber that stops consuming overflows and is dropped, it never slows the others.

Positions: events are per queue, so a place in "the" event history is one stream id per
queue. :func:`encode_position` makes that map an opaque, URL-safe token for clients to
resume from; :func:`decode_position` also accepts a bare stream id as a time position.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import structlog

from taskd.engine.flowwatch import FlowWatch, WorkflowUpdate
from taskd.errors import RedisUnavailable, ValidationError
from taskd.store import Event, Store, stream_id_key

log = structlog.get_logger(__name__)

Position = dict[str, str]
MAX_SEQ = 2**64 - 1


def encode_position(position: Position) -> str:
    """An opaque token for a per-queue position (base64url of a JSON object)."""
    raw = orjson.dumps(position, option=orjson.OPT_SORT_KEYS)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_position(token: str) -> Position:
    """Parse a token from :func:`encode_position`, or a bare stream id ``<ms>-<seq>``.

    A bare id names a moment rather than a place: it becomes "everything from that
    millisecond on" in every queue, so a client that kept only an event id may see a few
    events twice but never misses one. Queues absent from a token start at ``0-0``.
    """
    token = token.strip()
    try:
        if token and token.replace("-", "").isdigit() and token.count("-") <= 1:
            ms = stream_id_key(token)[0]
            return {"*": f"{ms - 1}-{MAX_SEQ}" if ms > 0 else "0-0"}
        parsed = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise ValidationError("since", "not an event id or last_event_id token") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _is_stream_id(v) for k, v in parsed.items()
    ):
        raise ValidationError("since", "not an event id or last_event_id token")
    return parsed


def _is_stream_id(value: str) -> bool:
    ms, sep, seq = value.partition("-")
    return ms.isdigit() and (not sep or seq.isdigit()) and int(seq or 0) <= MAX_SEQ


def resolve_position(position: Position, queues: list[str]) -> Position:
    """A decoded position as an explicit id for each of ``queues`` (``*`` = every queue)."""
    default = position.get("*", "0-0")
    return {q: position.get(q, default) for q in queues}


def merge_positions(a: Position, b: Position) -> Position:
    """Per queue, the further of two positions."""
    merged = dict(a)
    for queue, entry in b.items():
        if queue not in merged or stream_id_key(entry) > stream_id_key(merged[queue]):
            merged[queue] = entry
    return merged


@dataclass(slots=True)
class Batch:
    """Events of one flush (latest per task, stream order) and the relay positions around them.

    ``start`` is the position before the batch and ``position`` the one after it.
    ``rendered`` is for the consumer: it serialises a batch once for every subscriber.
    """

    events: list[Event]
    start: Position
    position: Position
    rendered: list[str] | None = None


@dataclass(slots=True)
class StatsUpdate:
    """A new overview (counts changed, or the throughput moved)."""

    stats: dict[str, Any]
    rendered: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Resync:
    """The relay was cut off from Redis longer than the capped streams cover: start over."""


Item = Batch | StatsUpdate | Resync | WorkflowUpdate


class Subscription:
    """One consumer's bounded buffer; the relay never waits for it.

    ``after`` filters out events at or before a per-queue position, so a consumer that
    subscribed first and read a snapshot (or history) second sees each later event once.
    """

    def __init__(self, limit: int, after: Position | None = None) -> None:
        self.limit = limit
        self.after = after
        self.overflowed = False
        self.closed = False
        self._items: deque[Item] = deque()
        self._ready = asyncio.Event()
        #: Set once finished, so a consumer stuck writing to a stalled peer can be interrupted.
        self.done = asyncio.Event()

    def offer(self, item: Item) -> bool:
        """Queue an item; False (and the subscription is finished) when the buffer is full."""
        if self.closed:
            return False
        if len(self._items) >= self.limit:
            self.overflowed = True
            self.close()
            return False
        self._items.append(item)
        self._ready.set()
        return True

    def close(self) -> None:
        """Finish: :meth:`next` returns None once the buffer is drained (or at once if full)."""
        self.closed = True
        if self.overflowed:
            self._items.clear()
        self._ready.set()
        self.done.set()

    async def next(self) -> Item | None:
        """The next item, waiting for one; None when the subscription is finished."""
        while not self._items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class Throughput:
    """Completed and failed per second over a sliding window, from the monotonic counters.

    Sampling the global ``completed_total``/``failed_total`` counters keeps this O(1) and
    correct across processes (every process reads the same counters).
    """

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, int, int]] = deque()

    def observe(self, completed_total: int, failed_total: int) -> None:
        """Record the counters now (samples closer than a second apart replace each other)."""
        now = self._clock()
        sample = (now, completed_total, failed_total)
        if self._samples and (
            completed_total < self._samples[-1][1] or failed_total < self._samples[-1][2]
        ):
            self._samples.clear()  # counters went backwards: Redis was flushed
        if len(self._samples) >= 2 and now - self._samples[-2][0] < 1.0:
            self._samples[-1] = sample
        else:
            self._samples.append(sample)
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def rates(self) -> dict[str, float]:
        """``completed_per_s``, ``failed_per_s`` and the ``window_s`` they were measured over."""
        if len(self._samples) < 2:
            return {"completed_per_s": 0.0, "failed_per_s": 0.0, "window_s": 0.0}
        (t0, c0, f0), (t1, c1, f1) = self._samples[0], self._samples[-1]
        span = max(t1 - t0, 1e-9)
        return {
            "completed_per_s": round((c1 - c0) / span, 3),
            "failed_per_s": round((f1 - f0) / span, 3),
            "window_s": round(span, 3),
        }


async def overview(store: Store, throughput: Throughput) -> dict[str, Any]:
    """Counts per status, throughput and ready depth per priority, over every queue."""
    counts = await store.stats()
    depth = await store.depth_by_priority()
    throughput.observe(counts.get("completed_total", 0), counts.get("failed_total", 0))
    return {
        **counts,
        "throughput": throughput.rates(),
        "depth_by_priority": {str(p): n for p, n in sorted(depth.items())},
    }


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Timing and bounds of a relay."""

    flush_interval_s: float = 0.1  # at most ~10 batches per second
    stats_interval_s: float = 1.0
    block_ms: int = 250  # also how soon a brand-new queue is noticed
    read_count: int = 1000
    # After a read that was not full, wait this long before the next: clients get batches
    # every flush_interval_s anyway, and one read per pause instead of one per few events
    # keeps a busy relay's round trips (and its share of the CPU) small.
    read_pause_s: float = 0.025
    queues_ttl_s: float = 1.0  # how long the list of queues to tail is reused
    subscriber_limit: int = 100  # buffered items before a subscriber is dropped


@dataclass(slots=True)
class _State:
    position: Position = field(default_factory=dict)
    pending: dict[str, Event] = field(default_factory=dict)
    started: bool = False
    cut_off: bool = False


class Relay:
    """Tails every queue's events once for this process and fans them out."""

    def __init__(self, store: Store, config: RelayConfig | None = None) -> None:
        self.store = store
        self.config = config or RelayConfig()
        self.throughput = Throughput()
        self.dropped = 0
        self.ready = asyncio.Event()
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[list[Event]], None]] = []
        self._state = _State()
        self._has_pending = asyncio.Event()
        self._last_stats: dict[str, Any] | None = None
        self._initial: Position = {}
        self._queues_at: tuple[float, list[str]] | None = None
        self._subscriptions_made = 0
        self._subscribed = asyncio.Event()  # set by subscribe(): wakes an idle relay
        self.flows = FlowWatch(store, self.publish)

    @property
    def last_stats(self) -> dict[str, Any] | None:
        """The overview most recently published, if any."""
        return self._last_stats

    @property
    def subscribers(self) -> int:
        """How many subscriptions are live."""
        return len(self._subs)

    def subscribe(self, after: Position | None = None) -> Subscription:
        """A new subscription with the configured buffer bound."""
        sub = Subscription(self.config.subscriber_limit, after)
        self._subs.add(sub)
        self._subscriptions_made += 1
        self._subscribed.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Finish a subscription and forget it."""
        sub.close()
        self._subs.discard(sub)

    def listen(self, callback: Callable[[list[Event]], None]) -> None:
        """Also hand every raw (uncoalesced) event list to ``callback`` (e.g. metrics)."""
        self._listeners.append(callback)

    def publish(self, item: Item) -> None:
        """Offer an item to every subscriber; drop those whose buffer is full."""
        for sub in list(self._subs):
            if not sub.offer(item):
                self._subs.discard(sub)
                if sub.overflowed:
                    self.dropped += 1
                    log.warning("subscriber_dropped", reason="buffer full", limit=sub.limit)

    async def run(self) -> None:
        """Read, flush and sample stats until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._forever(self._read_once, "event_relay"))
            group.create_task(self._flush_loop())
            group.create_task(self._forever(self._sample_stats, "stats_sampling"))
            group.create_task(self._forever(self.flows.step, "workflow_watch"))

    async def _forever(self, step: Callable[[], Awaitable[None]], name: str) -> None:
        """Repeat ``step``: Redis outages back off, bugs are logged, cancellation always wins.

        redis-py may turn a cancellation inside a command into a connection error; the
        task then still counts as cancelling, which is checked before every step.
        """
        failures = 0
        while True:
            raise_if_cancelling()
            try:
                await step()
                failures = 0
                continue
            except RedisUnavailable as exc:
                failures += 1
                self._state.cut_off = True
                delay = min(2.0, 0.05 * 2**failures)
                log.warning(f"{name}_waiting", error=str(exc), retry_in_s=delay)
            except Exception:  # a bug here must not end live updates for good
                log.exception(f"{name}_failed")
                delay = 1.0
            raise_if_cancelling()
            await asyncio.sleep(delay)

    async def _queues(self) -> list[str]:
        now = time.monotonic()
        if self._queues_at is None or now - self._queues_at[0] > self.config.queues_ttl_s:
            self._queues_at = (now, await self.store.queues())
        return self._queues_at[1]

    async def _read_once(self) -> None:
        state = self._state
        queues = await self._queues()
        if not state.started:
            state.position = await self.store.last_event_ids(queues)
            self._initial = dict(state.position)
            state.started = True
            self.ready.set()
        for queue in queues:
            state.position.setdefault(queue, "0-0")  # created after we started: all new
        if state.cut_off:
            state.cut_off = False
            if await self.store.event_gaps(state.position):
                log.warning("event_relay_resync", reason="events trimmed while cut off")
                self.publish(Resync())
                self.flows.recheck()
        if not state.position:
            await asyncio.sleep(self.config.block_ms / 1000)
            return
        if not self._subs and not self._listeners:
            await self._idle(queues)
            return
        events = await self.store.read_events(
            dict(state.position), count=self.config.read_count, block_ms=self.config.block_ms
        )
        if not events:
            return
        for event in events:
            state.position[event.queue] = event.event_id
            task_id = str(event.task.get("id", event.event_id))
            earlier = state.pending.get(task_id)
            # Events are deltas: the batch carries their union, at the task's first place,
            # so new tasks arrive in creation order.
            merged = event if earlier is None else replace(event, task=earlier.task | event.task)
            state.pending[task_id] = merged
        self.flows.observe(events)
        for listener in self._listeners:
            listener(events)
        self._has_pending.set()
        if len(events) < self.config.read_count:
            await asyncio.sleep(self.config.read_pause_s)

    async def _idle(self, queues: list[str]) -> None:
        """Nobody listens: follow the streams' ends instead of reading their events (a
        daemon without WebSocket clients spends nothing on them) until someone subscribes.

        Ends read while a subscription began are not used: a new subscriber's snapshot
        position must never be behind the relay's, or it would miss what lies between.
        """
        self._subscribed.clear()
        made = self._subscriptions_made
        ends = await self.store.last_event_ids(queues)
        if self._subscriptions_made == made:
            self._state.position.update(ends)
        if not self._subs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), self.config.block_ms / 1000)

    async def _flush_loop(self) -> None:
        last = 0.0
        published: Position = {}
        while True:
            await self._has_pending.wait()
            wait = last + self.config.flush_interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._has_pending.clear()
            state = self._state
            events, state.pending = list(state.pending.values()), {}
            last = time.monotonic()
            if events:
                position = dict(state.position)
                self.publish(Batch(events, published or self._initial, position))
                published = position
                self.flows.flushed(position)  # workflow updates follow the events that caused them

    async def _sample_stats(self) -> None:
        stats = await overview(self.store, self.throughput)
        if self._last_stats is None or _moved(stats, self._last_stats):
            self.publish(StatsUpdate(stats))
        self._last_stats = stats
        await asyncio.sleep(self.config.stats_interval_s)


def raise_if_cancelling() -> None:
    """End the current task if it was cancelled, even though the cancel was swallowed
    (redis-py can turn one inside a command into a connection error)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _moved(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether an overview changed beyond the measuring window growing (idle stays quiet)."""

    def key(stats: dict[str, Any]) -> dict[str, Any]:
        rates = {k: v for k, v in stats.get("throughput", {}).items() if k != "window_s"}
        return stats | {"throughput": rates}

    return key(new) != key(old)
