"""Submits one at a time, as most callers make them: one EVALSHA each, shared when busy.

A web handler or a script calls ``submit`` once per task. The cost of that call is the
round trip, so a single submit is one EVALSHA written straight to a connection this module
holds (no pipeline object, no pool checkout). When every held connection is already
waiting for a reply, further submits wait in a list and travel together, SHARED_MAX at a
time, on the next connection to come back (and on any other free one): many concurrent
callers share round trips, and the number of connections stays bounded whatever the
concurrency (a burst of thousands never exhausts the client's pool). Shared scripts are
kept short so that a burst is spread over the lanes: Redis runs one while the client
reads the reply of another and its callers submit again, instead of all of them waiting
for one long script (100 callers in a loop: 23,000-31,000 submits/s against
15,500-18,000/s with one unbounded script per returning connection).

Semantics are those of one submit per call: enqueue.lua has no error replies (callers
validated every value), so sharing a script changes nothing but the round trip count; a
unique key used twice in one batch resolves in order, as two calls in a row would. A
caller cancelled before its batch was sent is left out; one cancelled while its reply
is on the way may have created its task, exactly as a lost reply would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import redis.exceptions as rexc

from taskd.keys import Keys
from taskd.model import Task, TaskSpec
from taskd.store.held import Held, exchange
from taskd.store.records import enqueue_args, new_task
from taskd.store.translate import translate

if TYPE_CHECKING:
    from taskd.store.base import Call, StoreBase

LANES = 4  # connections held for submits: enough to overlap, few enough to batch well
SHARED_MAX = 32  # submits per shared script: a burst is spread over the lanes (below)
SUBMIT_CHUNK = 200  # tasks per enqueue script (a few ms of Redis time each)
FIRST_CHUNK = 50  # a batch's first scripts are short: workers see its first tasks sooner

Result = tuple[Task, bool]


class KeySource(Protocol):
    """What building an enqueue call needs: key names and the events cap."""

    events_maxlen: int

    def keys(self, queue: str) -> Keys:
        """Key names of a queue."""


def enqueue_call(
    store: KeySource,
    indexes: list[int],
    specs: Sequence[TaskSpec],
    occurrence: tuple[str, int, int] | None = None,
) -> Call:
    """The enqueue script call for ``specs[i]`` for i in ``indexes`` (all of one queue);
    ``occurrence`` = (marker key, occurrence ms, next occurrence ms) of a periodic one.
    One plain task (the per-call submit) goes to submit.lua, which writes the same."""
    k = store.keys(specs[indexes[0]].queue)
    if len(indexes) == 1 and occurrence is None and _plain(specs[indexes[0]]):
        return _submit_call(store, k, specs[indexes[0]])
    marker, at, next_at = occurrence or (k.seq, "", "")
    script_keys = [k.stats, k.index, k.events, k.delayed, k.seq, k.depth, *k.streams.values()]
    script_keys.append(marker)
    args: list[Any] = [store.events_maxlen, k.task_prefix, at, next_at]
    for i in indexes:
        s = specs[i]
        task_key = k.task(s.id)
        script_keys += [task_key, k.unique(s.unique_key) if s.unique_key else task_key]
        args += enqueue_args(s)
    script_keys += [k.history, k.history_index]
    return "enqueue", script_keys, args


def _plain(spec: TaskSpec) -> bool:
    """Whether a task is ready at once and has no unique key (what submit.lua creates)."""
    return not spec.unique_key and spec.delay_ms is None and spec.run_at_ms is None


def _submit_call(store: KeySource, k: Keys, s: TaskSpec) -> Call:
    script_keys = [k.stats, k.index, k.events, k.seq, k.depth, k.streams[s.priority]]
    script_keys += [k.task(s.id), k.history, k.history_index]
    args = [store.events_maxlen, s.id, s.name, s.task_type, s.queue, s.priority]
    args += [s.payload_json, s.max_retries, s.timeout_s]
    return "submit", script_keys, args


def enqueue_results(
    reply: Any, indexes: list[int], specs: Sequence[TaskSpec], into: list[Result | None]
) -> None:
    """Fill ``into[i]`` with (task, created) from one enqueue reply."""
    now = int(reply[0])
    for i, item in zip(indexes, reply[1:], strict=True):
        if item[0]:
            into[i] = (new_task(specs[i], item[1], item[2], item[3], now), True)
        else:
            into[i] = (Task.from_flat(item[1]), False)


def chunked(indexes: list[int]) -> list[list[int]]:
    """One queue's share of a batch as enqueue scripts: FIRST_CHUNK tasks, then twice as
    many each time up to SUBMIT_CHUNK (workers waiting behind them wait less at first)."""
    chunks: list[list[int]] = []
    start, size = 0, FIRST_CHUNK
    while start < len(indexes):
        chunks.append(indexes[start : start + size])
        start += size
        size = min(2 * size, SUBMIT_CHUNK)
    return chunks


def plan(specs: Sequence[TaskSpec]) -> list[list[int]]:
    """Script calls for a batch: each queue's specs in order, chunked."""
    if len(specs) == 1:
        return [[0]]
    by_queue: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        by_queue.setdefault(spec.queue, []).append(i)
    return [chunk for indexes in by_queue.values() for chunk in chunked(indexes)]


class Enqueuer:
    """Single submits of one store on at most LANES held connections (one event loop)."""

    def __init__(self, store: StoreBase, lanes: int = LANES) -> None:
        self._store = store
        self._lanes = Held(store.redis, lanes)
        self._waiting: list[tuple[TaskSpec, asyncio.Future[Result]]] = []
        self._batches: set[asyncio.Task[None]] = set()

    async def submit(self, spec: TaskSpec) -> Result:
        """Create one task: at once when a connection is free, else with the next batch."""
        conn = self._lanes.take()
        if conn is None:
            return await self._wait(spec)
        try:
            (result,) = await self.round_trip(conn, [spec])
        finally:
            self._give_back(conn)
        return result

    async def _wait(self, spec: TaskSpec) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((spec, future))
        try:
            return await future
        except asyncio.CancelledError:
            if not future.done():  # still listed: the batch leaves it out
                future.cancel()
            raise

    def _give_back(self, conn: Any) -> None:
        """A connection is free: it carries what waited meanwhile (SHARED_MAX at most,
        the rest going out on other free lanes or the next to come back), or rests."""
        while self._waiting and conn is not None:
            self._send_waiting(conn)
            conn = self._lanes.take()
        if conn is not None:
            self._lanes.give_back(conn)

    def _send_waiting(self, conn: Any) -> None:
        batch = self._waiting[:SHARED_MAX]
        del self._waiting[:SHARED_MAX]
        task = asyncio.get_running_loop().create_task(self._send_batch(conn, batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _send_batch(
        self, conn: Any, batch: list[tuple[TaskSpec, asyncio.Future[Result]]]
    ) -> None:
        live = [(spec, future) for spec, future in batch if not future.done()]
        try:
            if live:
                results = await self.round_trip(conn, [spec for spec, _ in live])
        except Exception as exc:
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(live, results if live else [], strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._give_back(conn)

    async def round_trip(self, conn: Any, specs: Sequence[TaskSpec]) -> list[Result]:
        """Write every script call of ``specs`` at once on ``conn``, then read the replies.

        A reply lost to a broken connection raises RedisUnavailable (the tasks may exist,
        as with any lost reply) and drops the connection; calls Redis answered NOSCRIPT
        (it restarted or flushed its scripts) had no effect and are sent again.
        """
        chunks = plan(specs)
        calls = [enqueue_call(self._store, chunk, specs) for chunk in chunks]
        replies = await exchange(self._store, conn, calls)
        redo = [i for i, r in enumerate(replies) if isinstance(r, rexc.NoScriptError)]
        if redo:
            await self._store.load_scripts({calls[i][0] for i in redo})
            again = await exchange(self._store, conn, [calls[i] for i in redo])
            for i, reply in zip(redo, again, strict=True):
                replies[i] = reply
        results: list[Result | None] = [None] * len(specs)
        for chunk, reply in zip(chunks, replies, strict=True):
            if isinstance(reply, Exception):
                raise translate(reply)
            enqueue_results(reply, chunk, specs, results)
        return [r for r in results if r is not None]
