"""Submitting, reading, listing and changing tasks by hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions as rexc

from taskd import keys
from taskd.errors import TaskNotFound
from taskd.keys import GROUP
from taskd.model import STATUS_NAMES, TASK_ID, Task, TaskSpec
from taskd.paging import Cursor, Entry, advance, order
from taskd.store.base import StoreBase
from taskd.store.enqueue import Enqueuer, enqueue_call, enqueue_results, plan
from taskd.store.records import new_task
from taskd.store.translate import translated


class TaskOps(StoreBase):
    """Tasks as the API and clients see them."""

    async def submit(self, specs: Sequence[TaskSpec]) -> list[tuple[Task, bool]]:
        """Create tasks; returns (task, created) in input order.

        ``created`` is False when a unique key already named a live task, which is
        returned instead. One task is one EVALSHA on a held connection, shared with other
        single submits when they arrive together (see :mod:`taskd.store.enqueue`). A batch
        writes each queue's tasks in order, SUBMIT_CHUNK per script (fewer in the first
        ones): a script holds Redis (every worker included) for as long as it runs, so a
        batch of thousands is a few short scripts, and workers start its first tasks while
        the rest is still being written. Each chunk is atomic, the batch is not.
        """
        if len(specs) == 1 and not self.cluster:
            await self.ready_queue(specs[0].queue)
            if self._enqueuer is None:
                self._enqueuer = Enqueuer(self)
            return [await self._enqueuer.submit(specs[0])]
        if len(specs) == 1:
            async with self._cluster_submits:
                return await self._submit_scripts(specs)
        return await self._submit_scripts(specs)

    async def _submit_scripts(self, specs: Sequence[TaskSpec]) -> list[tuple[Task, bool]]:
        """The enqueue scripts of ``specs``: one pipelined call, or streamed chunks."""
        for queue in dict.fromkeys(spec.queue for spec in specs):
            await self.ready_queue(queue)
        results: list[tuple[Task, bool] | None] = [None] * len(specs)
        chunks = plan(specs)

        def collect(n: int, reply: Any) -> None:
            enqueue_results(reply, chunks[n], specs, results)

        async with translated():
            if len(chunks) == 1:
                (reply,) = await self._pipelined([enqueue_call(self, chunks[0], specs)])
                collect(0, reply)
            else:
                await self._streamed(
                    len(chunks), lambda n: enqueue_call(self, chunks[n], specs), collect
                )
        return [r for r in results if r is not None]

    async def submit_occurrence(
        self, spec: TaskSpec, schedule: str, occurrence_ms: int, next_ms: int
    ) -> tuple[Task | None, int]:
        """Enqueue one occurrence of a periodic schedule unless its marker already reached
        it; returns (the task, or None when this call created none; Redis's now in ms).

        The marker check, the task and the marker's move are one script (enqueue.lua), so
        an occurrence is enqueued exactly once however many daemons race or stall. When
        Redis's clock already reached ``next_ms``, nothing is written: the caller looks
        again with the returned time. A schedule without a marker yet (no daemon saw it
        before) gets one at this occurrence, and nothing is enqueued.
        """
        if spec.queue not in self._ready_queues:
            await self.ensure_queue(spec.queue)
        occurrence = (self.keys(spec.queue).schedule(schedule), occurrence_ms, next_ms)
        async with translated():
            (reply,) = await self._pipelined([enqueue_call(self, [0], [spec], occurrence)])
        now = int(reply[0])
        if len(reply) == 1 or not reply[1][0]:
            return None, now
        _, status, sid, due = reply[1]
        return new_task(spec, status, sid, due, now), now

    async def locate(self, task_id: str) -> str:
        """The queue holding a task id (ids are unique over all queues)."""
        if not TASK_ID.fullmatch(task_id):
            raise TaskNotFound(task_id)
        queues = await self.queues()
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue in queues:
                pipe.exists(self.keys(queue).task(task_id))
            found = await pipe.execute()
        for queue, exists in zip(queues, found, strict=True):
            if exists:
                return str(queue)
        raise TaskNotFound(task_id)

    async def get(self, task_id: str, queue: str | None = None) -> Task:
        """One task by id, or TaskNotFound."""
        queue = queue or await self.locate(task_id)
        async with translated():
            raw = await self.redis.hgetall(self.keys(queue).task(task_id))
        if not raw:
            raise TaskNotFound(task_id)
        return Task.from_hash(raw)

    async def get_many(self, entries: Sequence[tuple[str, str]]) -> list[Task | None]:
        """Tasks by (queue, id) in one round trip; None where a task has expired."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue, task_id in entries:
                pipe.hgetall(self.keys(queue).task(task_id))
            raws = await pipe.execute()
        return [Task.from_hash(raw) if raw else None for raw in raws]

    async def list_tasks(
        self,
        *,
        limit: int = 100,
        cursor: Cursor | None = None,
        queue: str | None = None,
        accept: Callable[[Task], bool] | None = None,
        max_scan: int = 10_000,
    ) -> tuple[list[Task], Cursor | None]:
        """Newest first over one or all queues; ``accept`` filters; returns the next cursor.

        At most ``max_scan`` index entries are read per call, so a rare filter returns a
        short page with a cursor rather than scanning everything.
        """
        queues = [queue] if queue else await self.queues()
        found: list[Task] = []
        scanned = 0
        batch = max(limit, 100)
        while len(found) < limit and scanned < max_scan:
            candidates = await self._index_slice(queues, cursor, batch)
            ordered = order(candidates, cursor)[:batch]
            if not ordered:
                return found, None
            tasks = await self.get_many([(q, i) for _, q, i in ordered])
            taken: list[Entry] = []
            for entry, task in zip(ordered, tasks, strict=True):
                taken.append(entry)
                if task is not None and (accept is None or accept(task)):
                    found.append(task)
                    if len(found) == limit:
                        break
            cursor = advance(cursor, taken)
            scanned += len(taken)
        return found, cursor

    async def _index_slice(
        self, queues: list[str], cursor: Cursor | None, batch: int
    ) -> list[Entry]:
        top = "+inf" if cursor is None else str(cursor.score)
        skip = 0 if cursor is None else cursor.skip
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.zrange(
                    self.keys(q).index,
                    top,
                    "-inf",
                    desc=True,
                    byscore=True,
                    offset=0,
                    num=batch + skip,
                    withscores=True,
                )
            replies = await pipe.execute()
        return [
            (int(score), q, member)
            for q, reply in zip(queues, replies, strict=True)
            for member, score in reply
        ]

    async def stats(self, queue: str | None = None) -> dict[str, int]:
        """Counts per status plus totals, summed over one or all queues; O(queues)."""
        queues = [queue] if queue else await self.queues()
        totals = dict.fromkeys((*STATUS_NAMES, "total", "submitted"), 0)
        totals |= {"completed_total": 0, "failed_total": 0}
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.hgetall(self.keys(q).stats)
            for raw in await pipe.execute():
                for name, value in raw.items():
                    totals[name] = totals.get(name, 0) + int(value)
        return totals

    async def cancel(self, task_id: str) -> str:
        """Cancel a task; returns 'cancelled' or 'cancelling' (running, cooperative)."""
        task = await self.get(task_id)
        k = self.keys(task.queue)
        async with translated():
            return str(
                await self._call(
                    "cancel",
                    task_id,
                    "cancel",
                    keys=[
                        k.task(task_id),
                        k.stats,
                        k.events,
                        k.finished,
                        k.delayed,
                        k.stream(task.priority),
                        k.depth,
                        k.front,
                    ],
                    args=[self.events_maxlen, keys.CANCEL_CHANNEL, GROUP],
                )
            )

    async def retry(self, task_id: str) -> Task:
        """Send a failed or cancelled task back to pending with its attempts reset."""
        task = await self.get(task_id)
        k = self.keys(task.queue)
        async with translated():
            await self._call(
                "retry",
                task_id,
                "retry",
                keys=[
                    k.task(task_id),
                    k.stats,
                    k.events,
                    k.finished,
                    k.dead,
                    k.stream(task.priority),
                    k.depth,
                ],
                args=[self.events_maxlen],
            )
        return await self.get(task_id, task.queue)

    async def delete(self, task_id: str) -> str:
        """Delete a finished task now; returns the status it had. WrongState if unfinished."""
        task = await self.get(task_id)
        k = self.keys(task.queue)
        pointer = k.unique(task.unique_key) if task.unique_key else k.task(task_id)
        async with translated():
            return str(
                await self._call(
                    "delete",
                    task_id,
                    "delete",
                    keys=[k.task(task_id), k.stats, k.index, k.finished, k.dead, k.events, pointer],
                    args=[self.events_maxlen],
                )
            )

    async def depth_by_priority(self, queue: str | None = None) -> dict[int, int]:
        """Ready tasks not yet delivered to a worker, per priority, over one or all queues.

        Read from the depth counters the scripts keep (O(1) per queue).
        """
        queues = [queue] if queue else await self.queues()
        depth = dict.fromkeys(keys.PRIORITIES, 0)
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.hgetall(self.keys(q).depth)
            for raw in await pipe.execute():
                for priority, count in raw.items():
                    if int(priority) in depth:
                        depth[int(priority)] += max(0, int(count))
        return depth

    async def lease(self, task: Task) -> tuple[str, int, int] | None:
        """Who holds a task's stream entry: (consumer, ms since renewal, deliveries), or None.

        XPENDING on the one entry the attempt was delivered as. Workers renew with
        XCLAIM JUSTID, which resets the idle time but keeps the delivery count, so the
        idle time is the lease's age and the supervisor reclaims the entry once it passes
        ``lease_s``; a delivery count above one means the task was reclaimed before.
        """
        if not task.sid:
            return None
        stream = self.keys(task.queue).stream(task.priority)
        async with translated():
            try:
                rows = await self.redis.xpending_range(stream, GROUP, task.sid, task.sid, 1)
            except rexc.ResponseError:  # NOGROUP: the streams were flushed
                return None
        if not rows:
            return None
        row = rows[0]
        return str(row["consumer"]), int(row["time_since_delivered"]), int(row["times_delivered"])
