"""What the worker pool does: fetch, report, renew, finish."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.exceptions as rexc

from taskd import keys
from taskd.errors import StaleAttempt, TaskNotFound
from taskd.keys import GROUP
from taskd.model import Task
from taskd.store.base import StoreBase
from taskd.store.records import CancelRequests, Fetched
from taskd.store.translate import translated


class WorkerOps(StoreBase):
    """The worker side of the store."""

    async def fetch(
        self, queue: str, consumer: str, count: int, block_ms: int = 0, limits: str = ""
    ) -> list[Task]:
        """Start up to ``count`` tasks of one queue; block up to ``block_ms`` if none."""
        fetched = await self.start_ready(queue, consumer, count, limits)
        if fetched.tasks or block_ms <= 0 or fetched.paused:
            return fetched.tasks
        delivered = await self.wait_ready([queue], consumer, block_ms)
        if not delivered:
            return []
        return (await self.start_ready(queue, consumer, 0, limits, delivered[queue])).tasks

    async def start_ready(
        self,
        queue: str,
        consumer: str,
        count: int,
        limits: str = "",
        delivered: Sequence[tuple[int, str, str]] = (),
    ) -> Fetched:
        """Start the ``delivered`` entries, then ready tasks up to ``count`` started in all,
        without blocking.

        ``limits`` is the queue's rate limits as fetch.lua's JSON; ``delivered`` are
        (stream position, entry id, task id) triples from :meth:`wait_ready`.
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
        ]
        args: list[Any] = [GROUP, consumer, count, self.events_maxlen, k.task_prefix, limits]
        for triple in delivered:
            args += triple
        try:
            async with translated():
                paused, started = await self._scripts["fetch"](keys=script_keys, args=args)
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
                reply = await self._blocking.xreadgroup(
                    GROUP, consumer, dict.fromkeys(streams, ">"), count=1, block=block_ms
                )
        except rexc.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ready_queues.difference_update(queues)  # flushed: recreate on next start
            return {}
        delivered: dict[str, list[tuple[int, str, str]]] = {}
        for stream, entries in reply or []:
            queue, position = streams[stream]
            for sid, fields in entries:
                delivered.setdefault(queue, []).append((position, sid, fields.get("id", "")))
        return delivered

    async def complete(self, task: Task, result: Any) -> None:
        """Record success of the held attempt; StaleAttempt if it is no longer held."""
        (outcome,) = await self.complete_many([(task, orjson.dumps(result))])
        if outcome == "stale":
            raise StaleAttempt(task.id, task.attempt)
        if outcome == "missing":
            raise TaskNotFound(task.id)

    async def complete_many(self, done: Sequence[tuple[Task, bytes]]) -> list[str]:
        """Record many successes (results already JSON) in one round trip.

        Returns per task 'completed', 'stale' (attempt no longer held; nothing written)
        or 'missing'.
        """
        by_queue: dict[str, list[int]] = {}
        for i, (task, _) in enumerate(done):
            by_queue.setdefault(task.queue, []).append(i)
        outcomes = [""] * len(done)
        calls: list[tuple[str, list[str], list[Any]]] = []
        async with translated():
            for queue, indexes in by_queue.items():
                k = self.keys(queue)
                script_keys = [k.stats, k.events, k.finished]
                args: list[Any] = [GROUP, self.events_maxlen]
                for i in indexes:
                    task, result = done[i]
                    script_keys += [k.task(task.id), k.stream(task.priority)]
                    args += [task.attempt, task.sid, result]
                script_keys += [k.history, k.history_index]
                calls.append(("complete", script_keys, args))
            replies = await self._pipelined(calls)
        for indexes, reply in zip(by_queue.values(), replies, strict=True):
            for i, outcome in zip(indexes, reply, strict=True):
                outcomes[i] = str(outcome)
        return outcomes

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

    async def progress(self, task: Task, percent: int, message: str) -> int:
        """Store progress; 1 stored, 2 stored and cancel requested, 0 stale."""
        k = self.keys(task.queue)
        async with translated():
            return int(
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
                    ],
                    args=[GROUP, task.attempt, task.sid, self.events_maxlen],
                )
            )

    async def is_held(self, task: Task) -> bool:
        """True while this attempt of the task is the one processing (not reclaimed)."""
        async with translated():
            status, attempt, sid = await self.redis.hmget(
                self.keys(task.queue).task(task.id), "status", "attempt", "sid"
            )
        return bool(status == "processing" and attempt == str(task.attempt) and sid == task.sid)

    async def renew(self, consumer: str, held: Sequence[Task]) -> None:
        """Reset the idle time of held entries (XCLAIM JUSTID keeps the delivery count)."""
        by_stream: dict[str, list[str]] = {}
        for task in held:
            by_stream.setdefault(self.keys(task.queue).stream(task.priority), []).append(task.sid)
        if not by_stream:
            return
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for stream, sids in by_stream.items():
                pipe.xclaim(stream, GROUP, consumer, 0, sids, justid=True)
            await pipe.execute()

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
