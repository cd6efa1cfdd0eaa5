"""What supervisors and schedulers do: promote, reclaim, expire, trim."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis.exceptions as rexc

from taskd import keys
from taskd.keys import GROUP
from taskd.store.base import Call, StoreBase
from taskd.store.records import Reclaimed
from taskd.store.translate import translated


class UpkeepOps(StoreBase):
    """The housekeeping side of the store."""

    async def promote(self, queue: str, limit: int = 1000) -> tuple[int, int]:
        """Move due delayed tasks to their streams; returns (moved, ms to next due or -1)."""
        (result,) = await self.promote_many([queue], limit)
        return result

    async def promote_many(self, queues: Sequence[str], limit: int = 1000) -> list[tuple[int, int]]:
        """:meth:`promote` for many queues in one round trip."""
        calls: list[Call] = []
        for queue in queues:
            k = self.keys(queue)
            calls.append(
                (
                    "promote",
                    [k.delayed, k.stats, k.events, k.depth, *k.streams.values()],
                    [limit, k.task_prefix, self.events_maxlen],
                )
            )
        async with translated():
            replies = await self._pipelined(calls)
        return [(int(moved), int(wait_ms)) for moved, wait_ms in replies]

    async def reclaim_many(
        self,
        streams: Sequence[tuple[str, int, str]],
        consumer: str,
        min_idle_ms: int,
        count: int = 100,
    ) -> list[Reclaimed]:
        """:meth:`reclaim` for many (queue, priority, cursor) streams in one round trip."""
        calls: list[Call] = []
        for queue, priority, cursor in streams:
            k = self.keys(queue)
            calls.append(
                (
                    "reclaim",
                    [
                        k.stream(priority),
                        k.stats,
                        k.events,
                        k.finished,
                        k.dead,
                        k.depth,
                        k.front,
                        k.history,
                        k.history_index,
                    ],
                    [
                        GROUP,
                        consumer,
                        min_idle_ms,
                        cursor,
                        count,
                        k.task_prefix,
                        self.events_maxlen,
                    ],
                )
            )
        async with translated():
            replies = await self._pipelined(calls)
        return [Reclaimed(str(r[0]), list(r[1]), list(r[2]), list(r[3])) for r in replies]

    async def reclaim(
        self,
        queue: str,
        priority: int,
        consumer: str,
        min_idle_ms: int,
        cursor: str,
        count: int = 100,
    ) -> Reclaimed:
        """XAUTOCLAIM entries idle past the lease in one stream and re-queue their tasks."""
        (result,) = await self.reclaim_many(
            [(queue, priority, cursor)], consumer, min_idle_ms, count
        )
        return result

    async def expire(self, queue: str, retention_ms: int, limit: int = 1000) -> int:
        """Delete finished tasks older than the retention; returns how many."""
        k = self.keys(queue)
        async with translated():
            return int(
                await self._scripts["expire"](
                    keys=[k.finished, k.index, k.dead, k.stats],
                    args=[retention_ms, limit, k.task_prefix, k.unique_prefix],
                )
            )

    async def trim(self, queue: str) -> int:
        """Trim every ready stream of a queue below its oldest still-needed entry."""
        k = self.keys(queue)
        removed = 0
        async with translated():
            for stream in k.streams.values():
                removed += int(await self._scripts["trim"](keys=[stream], args=[GROUP]))
        return removed

    async def verify_depth(self, queue: str, limit: int = 1000) -> dict[int, tuple[int, int]]:
        """Check each priority's depth counter against the entries really waiting and
        correct a drift; returns {priority: (counter found, counter now)} for corrections.

        Levels with more than ``limit`` entries waiting or delivered are not verified (the
        check reads them in bounded steps inside one script).
        """
        k = self.keys(queue)
        calls: list[Call] = [
            ("verify_depth", [stream, k.depth], [GROUP, priority, k.task_prefix, limit])
            for priority, stream in k.streams.items()
        ]
        async with translated():
            replies = await self._pipelined(calls)
        return {
            priority: (int(reply[0]), int(reply[1]))
            for priority, reply in zip(k.streams, replies, strict=True)
            if reply and int(reply[0]) != int(reply[1])
        }

    async def consumers(self, queue: str) -> dict[str, tuple[int, int]]:
        """Consumer name -> (entries pending, ms idle) summed over a queue's streams."""
        k = self.keys(queue)
        found: dict[str, tuple[int, int]] = {}
        async with translated():
            for stream in k.streams.values():
                try:
                    infos = await self.redis.xinfo_consumers(stream, GROUP)
                except rexc.ResponseError:
                    continue
                for info in infos:
                    pending, idle = found.get(info["name"], (0, 1 << 62))
                    found[info["name"]] = (
                        pending + int(info["pending"]),
                        min(idle, int(info["idle"])),
                    )
        return found

    async def is_alive(self, consumer: str) -> bool:
        """True while the consumer's heartbeat record exists."""
        async with translated():
            return bool(await self.redis.exists(keys.worker_info(consumer)))

    async def fail_unrunnable(
        self, queue: str, task_types: Sequence[str], limit: int = 1000
    ) -> list[str]:
        """Fail handed-back tasks of ``queue`` whose type is not in ``task_types`` (what
        its live workers run); returns their ids."""
        k = self.keys(queue)
        async with translated():
            failed = await self._scripts["fail_unrunnable"](
                keys=[k.front, k.stats, k.events, k.finished, k.dead, *k.streams.values()],
                args=[
                    GROUP,
                    k.task_prefix,
                    self.events_maxlen,
                    orjson.dumps(sorted(task_types)).decode(),
                    limit,
                ],
            )
        return [str(i) for i in failed]

    async def delete_consumer(self, queue: str, consumer: str, min_idle_ms: int = 0) -> bool:
        """Remove a consumer from a queue's group if it holds nothing and was idle at least
        ``min_idle_ms``, checked and deleted in one script; True when removed."""
        k = self.keys(queue)
        async with translated():
            removed = await self._scripts["drop_consumer"](
                keys=list(k.streams.values()), args=[GROUP, consumer, min_idle_ms]
            )
        return bool(removed)
