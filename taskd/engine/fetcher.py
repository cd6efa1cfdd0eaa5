"""What the pool fetches next: queues in order of preference, per-queue caps, pauses,
shared rate limits, and the blocking wait when everything is empty.

With several queues, each pass offers free slots to the most preferred queue first; a
queue capped at N never holds more than N tasks of this process. When no queue had work,
one XREADGROUP BLOCK waits on every ready stream of every active queue at once (on Redis
Cluster, where queues live on different nodes, on the most preferred one for a short
time), so an idle pool starts a new task within a round trip.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import orjson

from taskd.model import Status, Task, parse_queue_spec
from taskd.store import Store


def _starting(idle: Callable[[], int], taken: list[Task]) -> int:
    """How many tasks the next fetch call may start at once: the runners idle now, less
    the tasks this pass already started for them (not yet in the buffer they wait on)."""
    return max(0, idle() - sum(1 for task in taken if task.status == Status.PROCESSING))


def limits_json(queue: str, rate_limits: Iterable[tuple[str, float, int]]) -> str:
    """fetch.lua's rate-limit argument for one queue: {scope: [interval ms, tolerance ms]}."""
    scopes: dict[str, list[float]] = {}
    for scope, per_second, burst in rate_limits:
        interval = 1000.0 / per_second
        if scope == f"queue:{queue}":
            scopes["queue"] = [interval, interval * (burst - 1)]
        elif not scope.startswith("queue:"):
            scopes[f"type:{scope}"] = [interval, interval * (burst - 1)]
    return orjson.dumps(scopes).decode() if scopes else ""


class Fetcher:
    """Fetches for one consumer; remembers which queues were paused at the last look."""

    def __init__(
        self,
        store: Store,
        consumer: str,
        queue_specs: Sequence[str],
        *,
        rate_limits: Sequence[tuple[str, float, int]] = (),
        block_ms: int = 500,
        single_node: bool = True,
        task_types: Sequence[str] | None = None,
    ) -> None:
        self.store = store
        self.consumer = consumer
        self.queues = [parse_queue_spec(spec) for spec in queue_specs]
        self.block_ms = block_ms
        self.single_node = single_node
        self.paused: set[str] = set()
        self._limits = {name: limits_json(name, rate_limits) for name, _ in self.queues}
        # Tasks of other types are handed back for a worker that runs them (None: any).
        self._types = "" if task_types is None else orjson.dumps(sorted(task_types)).decode()
        self._drained: set[str] = set()
        self._capped = any(cap is not None for _, cap in self.queues)
        # Straight to the blocking read when drained: no caps to honour, one read spans all.
        self._wait_directly = not self._capped and (single_node or len(self.queues) == 1)

    async def fetch(
        self, room: int, held: Iterable[Task], idle: Callable[[], int] = lambda: 0
    ) -> list[Task]:
        """Reserve up to ``room`` tasks; block a while when there is nothing to take.

        ``idle()`` is how many runners wait for a task at the moment of each call: that
        many of the tasks taken start at once (see fetch.lua), the rest are reserved.
        """
        held_by_queue = Counter(task.queue for task in held) if self._capped else Counter()
        if self._all_drained():
            # Every queue was empty at the last look: wait for new entries directly (a
            # blocking read returns at once when some arrived meanwhile); an idle pool
            # then costs one blocking read per wake-up, not a look first.
            return await self._wait(self.queue_names(), room, held_by_queue, idle)
        started, waitable = await self._start_each(room, held_by_queue, idle)
        if started:
            return started
        if not waitable:  # all paused or capped: look again shortly
            await asyncio.sleep(min(self.block_ms, 200) / 1000)
            return []
        return await self._wait(waitable, room, held_by_queue, idle)

    def _take(self, name: str, cap: int | None, room: int, held_by_queue: Counter[str]) -> int:
        """How many tasks of one queue may be reserved now (per-queue caps apply)."""
        return room if cap is None else min(room, cap - held_by_queue[name])

    async def _start_each(
        self, room: int, held_by_queue: Counter[str], idle: Callable[[], int]
    ) -> tuple[list[Task], list[str]]:
        """One non-blocking reserve per queue, most preferred first; returns (reserved,
        queues to wait on)."""
        started: list[Task] = []
        waitable: list[str] = []
        for name, cap in self.queues:
            take = self._take(name, cap, room - len(started), held_by_queue)
            if take <= 0:
                continue
            fetched = await self.store.reserve_ready(
                name,
                self.consumer,
                take,
                self._limits[name],
                types=self._types,
                start=_starting(idle, started),
            )
            started += fetched.tasks
            held_by_queue[name] += len(fetched.tasks)
            self._drained.discard(name)
            if fetched.paused:
                self.paused.add(name)
            else:
                self.paused.discard(name)
                if len(fetched.tasks) < take:
                    waitable.append(name)
                    self._drained.add(name)
        return started, waitable

    def _all_drained(self) -> bool:
        """Whether every queue (none capped) had fewer ready tasks than asked for at the
        last look and nothing has been delivered since."""
        return self._wait_directly and all(name in self._drained for name, _ in self.queues)

    async def _wait(
        self,
        waitable: list[str],
        room: int,
        held_by_queue: Counter[str],
        idle: Callable[[], int],
    ) -> list[Task]:
        if not self.single_node and len(waitable) > 1:
            delivered = await self.store.wait_ready(waitable[:1], self.consumer, 100)
        else:
            delivered = await self.store.wait_ready(waitable, self.consumer, self.block_ms)
        # After a quiet wait, tasks handed back meanwhile (which wake no blocking read)
        # wait in the front zset, and a queue the read delivered nothing from may hold
        # some too: the next pass looks before it blocks again, unless the reserve below
        # finds a queue drained.
        self._drained.clear()
        # The read delivers one entry per level, but a burst of submissions has usually
        # put more behind it: the same reserve call fills the room, and no more.
        return await self._start_delivered(delivered, room, held_by_queue, idle, note_drained=True)

    async def _start_delivered(
        self,
        delivered: dict[str, list[tuple[int, str, str]]],
        room: int,
        held_by_queue: Counter[str],
        idle: Callable[[], int] = lambda: 0,
        *,
        note_drained: bool = False,
    ) -> list[Task]:
        """Reserve the entries a blocking read delivered, queue by queue, with more ready
        ones, up to ``room`` tasks in all (and each queue's cap); delivered entries beyond
        that go back to the front of their level.

        With ``note_drained``, a queue whose reserve took less than asked is noted as
        drained, as a look does (the call reads the front and the streams past what was
        delivered): the next fetch of an idle pool blocks at once instead of spending a
        round trip on an empty look.
        """
        started: list[Task] = []
        caps = dict(self.queues)
        for name, entries in delivered.items():
            take = max(0, self._take(name, caps.get(name), room - len(started), held_by_queue))
            fetched = await self.store.reserve_ready(
                name,
                self.consumer,
                take,
                self._limits[name],
                entries,
                self._types,
                start=_starting(idle, started),
            )
            started += fetched.tasks
            if note_drained and not fetched.paused and len(fetched.tasks) < take:
                self._drained.add(name)
        return started

    async def fetch_urgent(self, above: int, held: Iterable[Task], room: int) -> list[Task] | None:
        """Block a while for tasks of priority > ``above`` and reserve them (one per
        level at most); None when no queue may take more now (all paused or capped)."""
        held_by_queue = Counter(task.queue for task in held)
        names = [
            name
            for name, cap in self.queues
            if name not in self.paused and (cap is None or held_by_queue[name] < cap)
        ]
        if not names:
            return None
        if not self.single_node:
            names = names[:1]  # one blocking read cannot span cluster nodes
        delivered = await self.store.wait_ready(names, self.consumer, self.block_ms, above=above)
        room = min(room, sum(map(len, delivered.values())))  # only what was delivered
        # The pool is full while this watches: what it takes is reserved, never started.
        return await self._start_delivered(delivered, room, held_by_queue)

    def queue_names(self) -> list[str]:
        """Names of the consumed queues, most preferred first."""
        return [name for name, _ in self.queues]
