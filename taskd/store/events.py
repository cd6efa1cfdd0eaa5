"""Reading the per-queue event streams (live relay, resume, task history)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from taskd.model import Task
from taskd.store.base import StoreBase
from taskd.store.records import Event, stream_id_key, task_fields
from taskd.store.translate import translated

POLL_MS = 50  # how often a cluster's multi-queue read looks again when idle


class EventOps(StoreBase):
    """The events side of the store."""

    async def last_event_ids(self, queues: Sequence[str]) -> dict[str, str]:
        """The newest event id of each queue ('0-0' when it has none)."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.xrevrange(self.keys(q).events, count=1)
            replies = await pipe.execute()
        return {q: (r[0][0] if r else "0-0") for q, r in zip(queues, replies, strict=True)}

    async def read_events(
        self, after: dict[str, str], count: int = 1000, block_ms: int | None = None
    ) -> list[Event]:
        """Events after the given id of each queue, oldest first; blocks when asked.

        On Redis Cluster, where each queue's stream lives in its own slot, the queues are
        read in one pipeline, and an idle wait looks again every ``POLL_MS``.
        """
        if not self.cluster or len(after) <= 1:
            streams = {self.keys(q).events: last for q, last in after.items()}
            client = self._blocking if block_ms is not None else self.redis
            async with translated():
                reply = await client.xread(streams, count=count, block=block_ms)
            return self._events(reply)
        events = await self._read_each(after, count)
        if events or block_ms is None:
            return events
        # No single blocking read spans slots, and cancelling concurrent blocking reads
        # leaks their connections: look again after a short pause (the relay batches
        # events every 100 ms anyway).
        await asyncio.sleep(min(block_ms, POLL_MS) / 1000)
        return await self._read_each(after, count)

    async def _read_each(self, after: dict[str, str], count: int) -> list[Event]:
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue, last in after.items():
                pipe.xread({self.keys(queue).events: last}, count=count)
            replies = await pipe.execute()
        return [event for reply in replies for event in self._events(reply)]

    def _events(self, reply: Any) -> list[Event]:
        queue_of: dict[str, str] = {}
        events: list[Event] = []
        for stream, entries in reply or []:
            queue = queue_of.get(stream) or stream.split("{", 1)[1].rsplit("}", 1)[0]
            queue_of[stream] = queue
            for event_id, fields in entries:
                events.append(
                    Event(queue, event_id, fields["kind"], int(fields["ts"]), task_fields(fields))
                )
        return events

    async def event_gaps(self, after: dict[str, str]) -> set[str]:
        """Queues whose events after the given id may have been trimmed from the capped stream.

        Trimming removes the oldest entries, so events after ``after[q]`` are all still
        there when ``after[q]`` is at or past the first kept entry, or nothing was removed.
        """
        queues = list(after)
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.xinfo_stream(self.keys(q).events)
            replies = await pipe.execute(raise_on_error=False)
        gaps: set[str] = set()
        for q, info in zip(queues, replies, strict=True):
            if not isinstance(info, dict) or int(info.get("entries-added") or 0) <= int(
                info.get("length") or 0
            ):
                continue
            first = info.get("first-entry")
            first_id = str(first[0]) if first else str(info.get("last-generated-id", "0-0"))
            if stream_id_key(after[q]) < stream_id_key(first_id):
                gaps.add(q)
        return gaps

    async def task_events(self, task: Task, *, max_scan: int = 5000) -> tuple[list[Event], bool]:
        """A task's events, oldest first, and whether they reach back to its creation.

        Only the stretch of its queue's events stream between the task's creation and its
        last update is read (stream ids are Redis-clock milliseconds, like the task's
        timestamps), newest first and at most ``max_scan`` entries, so a click costs a
        bounded read and what a bound cuts off is the oldest part.
        """
        stream = self.keys(task.queue).events
        # A second of slack: an entry's id and the script's TIME may straddle a millisecond.
        low = f"{task.created_at - 1000}-0" if task.created_at > 1000 else "-"
        high = str(task.updated_at + 1000) if task.status.finished else "+"
        found: list[Event] = []
        scanned = 0
        async with translated():
            while scanned < max_scan:
                entries = await self.redis.xrevrange(stream, high, low, count=500)
                for event_id, fields in entries:
                    if fields.get("id") == task.id or task.id in fields.get("task", ""):
                        kind, ts = fields["kind"], int(fields["ts"])
                        found.append(Event(task.queue, event_id, kind, ts, task_fields(fields)))
                scanned += len(entries)
                if len(entries) < 500:
                    break
                high = "(" + entries[-1][0]
        found.reverse()
        # Complete when its first event (creation) is there: not trimmed, not cut off.
        return found, bool(found) and found[0].kind == "created"
