"""What the worker pool does: fetch, report, renew, finish."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.exceptions as rexc

from taskd import keys
from taskd.keys import GROUP
from taskd.model import Status, Task
from taskd.store.base import Call, StoreBase
from taskd.store.held import REPLY_TIMEOUT_S, exchange_commands
from taskd.store.records import CancelRequests, Fetched, Renewal
from taskd.store.replies import is_code
from taskd.store.translate import translated

#: One runner's call in a coalesced batch: (kind 'begin' | 'complete', consumer, task,
#: result JSON for a completion).
Step = tuple[str, str, Task, bytes]


def _entry_task_id(fields: Any) -> str:
    """The task id of a ready stream entry's fields (a flat list, or a dict)."""
    if isinstance(fields, dict):
        return str(fields.get("id", ""))
    for i in range(0, len(fields or ()) - 1, 2):
        if fields[i] == "id":
            return str(fields[i + 1])
    return ""


def _begun(task: Task, reply: str) -> Task | None:
    """The task as begin.lua left it, or None when it answered a code."""
    if is_code(reply):
        return None
    task.status = Status.PROCESSING
    task.started_at = int(reply)
    return task


class WorkerOps(StoreBase):
    """The worker side of the store."""

    async def reserve_ready(
        self,
        queue: str,
        consumer: str,
        count: int,
        limits: str = "",
        delivered: Sequence[tuple[int, str, str]] = (),
        types: str = "",
        start: int = 0,
    ) -> Fetched:
        """Reserve the ``delivered`` entries, then ready tasks, up to ``count`` in all,
        without blocking; delivered entries beyond ``count`` go back to the front.

        The first ``start`` of them are started at once (status processing): the caller
        has that many idle runners, and a task going straight to one needs no
        :meth:`begin_many` round trip between its delivery and its handler.

        Reserved tasks are held by ``consumer`` but not started: :meth:`begin_many`
        starts them. ``limits`` is the queue's rate limits as fetch.lua's JSON;
        ``delivered`` are (stream position, entry id, task id) triples from
        :meth:`wait_ready`. ``types`` is the JSON list of task types ``consumer`` runs
        ('' for any): tasks of other types are handed back to the front, not reserved.
        """
        if queue not in self._ready_queues:
            await self.ensure_queue(queue)
        k = self.keys(queue)
        script_keys = [
            k.stats,
            k.events,
            k.depth,
            k.paused,
            k.ratelimit,
            k.delayed,
            *k.streams_by_urgency,
            k.front,
        ]
        args: list[Any] = [
            GROUP,
            consumer,
            count,
            self.events_maxlen,
            k.task_prefix,
            limits,
            types,
            start,
        ]
        for triple in delivered:
            args += triple
        try:
            async with translated():
                paused, started = await self.call_held("fetch", script_keys, args)
        except rexc.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ready_queues.discard(queue)  # streams vanished (flushed): recreate
            return Fetched([], False)
        return Fetched([Task.from_flat(flat) for flat in started], bool(paused))

    async def wait_ready(
        self, queues: Sequence[str], consumer: str, block_ms: int, *, above: int = 0
    ) -> dict[str, list[tuple[int, str, str]]]:
        """Block until an entry of priority > ``above`` arrives in any of the queues' ready
        streams (XREADGROUP BLOCK; an undelivered one is returned at once).

        Returns the entries delivered to ``consumer`` per queue, to be started with
        :meth:`start_ready`. All queues must live on one Redis node (not across a cluster).
        """
        streams: dict[str, tuple[str, int]] = {}
        for queue in queues:
            for position, stream in enumerate(self.keys(queue).streams_by_urgency, start=1):
                if 11 - position > above:  # position 1 is priority 10
                    streams[stream] = (queue, position)
        try:
            async with translated():
                reply = await self._read_blocking(list(streams), consumer, block_ms)
        except rexc.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ready_queues.difference_update(queues)  # flushed: recreate on next start
            return {}
        delivered: dict[str, list[tuple[int, str, str]]] = {}
        for stream, entries in reply or []:
            queue, position = streams[stream]
            for sid, fields in entries:
                delivered.setdefault(queue, []).append((position, sid, _entry_task_id(fields)))
        return delivered

    async def _read_blocking(self, streams: list[str], consumer: str, block_ms: int) -> Any:
        """XREADGROUP BLOCK, COUNT 1 per stream: (stream, [(entry id, fields), ...]) pairs,
        or None. On one server it goes on a connection held out of the blocking client's
        pool (see taskd.store.held), as it is what wakes an idle pool."""
        conn = None if self.cluster else self._held_reads.take()
        if conn is None:
            return await self._blocking.xreadgroup(
                GROUP, consumer, dict.fromkeys(streams, ">"), count=1, block=block_ms
            )
        command: tuple[Any, ...] = ("XREADGROUP", "GROUP", GROUP, consumer, "COUNT", 1)
        command += ("BLOCK", block_ms, "STREAMS", *streams, *(">" for _ in streams))
        try:
            (reply,) = await exchange_commands(conn, [command], block_ms / 1000 + REPLY_TIMEOUT_S)
        finally:
            self._held_reads.give_back(conn)
        if isinstance(reply, Exception):
            raise reply
        return reply.items() if isinstance(reply, dict) else reply  # (RESP3 answers a map)

    async def begin_many(self, consumer: str, tasks: Sequence[Task]) -> list[Task | None]:
        """Start reserved tasks (reserved -> processing) in one round trip: each as
        processing, or None when its holding is over (cancelled, reclaimed, gone)."""
        replies = await self.steps([("begin", consumer, task, b"") for task in tasks])
        return [_begun(task, reply) for task, reply in zip(tasks, replies, strict=True)]

    async def complete_many(self, done: Sequence[tuple[Task, bytes]]) -> list[str]:
        """Record many successes (results already JSON) in one round trip.

        Returns per task 'completed', or a reply code (taskd.store.replies): STALE when
        the attempt is no longer held (nothing written), NOTFOUND.
        """
        return await self.steps([("complete", "", task, result) for task, result in done])

    async def steps(self, steps: Sequence[Step]) -> list[str]:
        """Run begins and completions of many runners in one pipeline, every completion
        before every begin: a runner that finished a task and takes the next never counts
        as two processing tasks. Returns one reply per step, in order (see begin.lua and
        complete.lua; codes of taskd.store.replies in place of items not done)."""
        calls: list[Call] = []
        slots: list[list[int]] = []
        for kind in ("complete", "begin"):
            by_queue: dict[tuple[str, str], list[int]] = {}
            for i, (step_kind, consumer, task, _) in enumerate(steps):
                if step_kind == kind:
                    by_queue.setdefault((task.queue, consumer), []).append(i)
            for (queue, consumer), indexes in by_queue.items():
                calls.append(self._step_call(kind, queue, consumer, [steps[i] for i in indexes]))
                slots.append(indexes)
        replies: list[str] = [""] * len(steps)
        async with translated():
            results = await self._pipelined(calls)
        for indexes, reply in zip(slots, results, strict=True):
            for i, item in zip(indexes, reply, strict=True):
                replies[i] = str(item)
        return replies

    def _step_call(self, kind: str, queue: str, consumer: str, steps: list[Step]) -> Call:
        k = self.keys(queue)
        if kind == "complete":
            script_keys = [k.stats, k.events, k.finished]
            args: list[Any] = [GROUP, self.events_maxlen]
        else:
            script_keys = [k.stats, k.events, k.finished, k.paused, k.depth, k.front]
            args = [GROUP, consumer, self.events_maxlen]
        for _, _, task, result in steps:
            script_keys += [k.task(task.id), k.stream(task.priority)]
            args += [task.attempt, task.sid]
            if kind == "complete":
                args.append(result)
        if kind == "complete":
            script_keys += [k.history, k.history_index]
        return (kind, script_keys, args)

    async def fail(self, task: Task, error: str, mode: str, delay_ms: int = 0) -> str:
        """Record failure of the held attempt (mode retry|fail|cancel); returns new status."""
        k = self.keys(task.queue)
        async with translated():
            return str(
                await self._scripts["fail"](
                    keys=[
                        k.task(task.id),
                        k.stream(task.priority),
                        k.stats,
                        k.events,
                        k.finished,
                        k.delayed,
                        k.dead,
                        k.history,
                        k.history_index,
                    ],
                    args=[
                        GROUP,
                        task.attempt,
                        task.sid,
                        error[:4000],
                        mode,
                        delay_ms,
                        self.events_maxlen,
                    ],
                )
            )

    async def progress(self, task: Task, percent: int, message: str) -> str:
        """Store progress: 'stored', 'cancel' (stored; a cancel was requested) or the
        STALE code (ignored: the attempt moved on)."""
        k = self.keys(task.queue)
        async with translated():
            return str(
                await self._scripts["progress"](
                    keys=[k.task(task.id), k.events],
                    args=[task.attempt, task.sid, percent, message[:500], self.events_maxlen],
                )
            )

    async def release(self, task: Task) -> str:
        """Hand a held task back to its queue without using an attempt."""
        k = self.keys(task.queue)
        async with translated():
            return str(
                await self._scripts["release"](
                    keys=[
                        k.task(task.id),
                        k.stream(task.priority),
                        k.stats,
                        k.events,
                        k.finished,
                        k.depth,
                        k.front,
                    ],
                    args=[GROUP, task.attempt, task.sid, self.events_maxlen],
                )
            )

    async def renew(
        self, consumer: str, held: Sequence[Task], orphan_ms: int, queues: Sequence[str] = ()
    ) -> Renewal:
        """Renew the leases of held tasks (one renew.lua per queue, one round trip).

        Also learns which held tasks were asked to cancel (the publish may have missed
        this worker) or are no longer its own, and hands back entries in ``consumer``'s
        name idle over ``orphan_ms`` that it does not hold (a fetch whose reply was lost),
        in the queues it consumes (``queues``) and those of held tasks.
        """
        by_queue: dict[str, list[Any]] = {}
        for task in held:
            by_queue.setdefault(task.queue, []).extend((task.priority, task.sid, task.id))
        calls: list[Call] = []
        for queue in sorted(set(by_queue) | set(queues)):
            k = self.keys(queue)
            script_keys = [*k.streams.values(), k.stats, k.events, k.front, k.depth]
            args = [GROUP, consumer, orphan_ms, k.task_prefix, self.events_maxlen]
            calls.append(("renew", script_keys, args + by_queue.get(queue, [])))
        async with translated():
            replies = await self._pipelined(calls)
        renewal = Renewal(set(), set(), [])
        for cancels, lost, orphans in replies:
            renewal.cancels.update(cancels)
            renewal.lost.update(lost)
            renewal.orphans.extend(orphans)
        return renewal

    async def heartbeat(self, consumer: str, info: dict[str, Any], ttl_s: float) -> None:
        """Announce a live consumer; its record expires if the process dies."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(keys.worker_info(consumer), orjson.dumps(info), px=int(ttl_s * 1000))
            pipe.zadd(keys.WORKERS, {consumer: int(time.time() * 1000)})
            await pipe.execute()

    async def unregister(self, consumer: str) -> None:
        """Remove a consumer's heartbeat on clean shutdown."""
        async with translated():
            await self.redis.delete(keys.worker_info(consumer))
            await self.redis.zrem(keys.WORKERS, consumer)

    async def workers(self) -> list[dict[str, Any]]:
        """Live consumers' heartbeat records; stale names are dropped from the registry."""
        async with translated():
            names = await self.redis.zrange(keys.WORKERS, 0, -1)
            if not names:
                return []
            pipe = self.redis.pipeline(transaction=False)  # keys of many slots: no MGET
            for name in names:
                pipe.get(keys.worker_info(name))
            infos = await pipe.execute()
            dead = [n for n, i in zip(names, infos, strict=True) if i is None]
            if dead:
                await self.redis.zrem(keys.WORKERS, *dead)
        return [orjson.loads(i) for i in infos if i is not None]

    def cancel_requests(self) -> CancelRequests:
        """A subscription to the ids of running tasks whose cancellation was requested."""
        return CancelRequests(self._blocking.pubsub(ignore_subscribe_messages=True))
