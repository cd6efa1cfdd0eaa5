"""Queue controls: pause, resume, purge, and per-queue state."""

from __future__ import annotations

from collections.abc import Sequence

from taskd import keys
from taskd.keys import GROUP
from taskd.model import STATUS_NAMES
from taskd.store.base import StoreBase
from taskd.store.translate import translated


class QueueOps(StoreBase):
    """Whole-queue operations."""

    async def pause(self, queue: str) -> None:
        """Stop every daemon from starting tasks of the queue (submissions still accepted)."""
        if queue not in self._ready_queues:
            await self.ensure_queue(queue)
        async with translated():
            await self.redis.set(self.keys(queue).paused, "1")

    async def resume(self, queue: str) -> None:
        """Let daemons start the queue's tasks again."""
        async with translated():
            await self.redis.delete(self.keys(queue).paused)

    async def paused_queues(self, queues: Sequence[str]) -> set[str]:
        """Which of the queues are paused."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue in queues:
                pipe.exists(self.keys(queue).paused)
            flags = await pipe.execute()
        return {q for q, flag in zip(queues, flags, strict=True) if flag}

    async def purge(self, queue: str, step: int = 500) -> int:
        """Cancel every task of the queue not yet started, wherever it waits (a stream, a
        worker's buffer, the front, the delayed zset); running ones finish. Returns how
        many."""
        k = self.keys(queue)
        total = 0
        async with translated():
            while True:
                done, examined = await self._scripts["purge"](
                    keys=[
                        k.stats,
                        k.events,
                        k.finished,
                        k.delayed,
                        k.depth,
                        *k.streams.values(),
                        k.front,
                    ],
                    args=[GROUP, k.task_prefix, self.events_maxlen, step, keys.CANCEL_CHANNEL],
                )
                total += int(done)
                if not int(examined):
                    return total

    async def queue_totals(self, queues: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(completed_total, failed_total) of each queue: counters that only grow (until
        Redis is flushed), for rates; one round trip."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.hmget(self.keys(q).stats, "completed_total", "failed_total")
            replies = await pipe.execute()
        return {
            q: (int(completed or 0), int(failed or 0))
            for q, (completed, failed) in zip(queues, replies, strict=True)
        }

    async def queue_states(
        self, queues: Sequence[str]
    ) -> list[tuple[dict[str, int], dict[int, int], bool]]:
        """(counts per status and total, ready depth per priority, paused) of each queue.

        One pipeline for every queue, so listing queues costs one round trip however
        many there are (the per-queue methods would cost three each).
        """
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                k = self.keys(q)
                pipe.hgetall(k.stats)
                pipe.hgetall(k.depth)
                pipe.exists(k.paused)
            replies = await pipe.execute()
        found: list[tuple[dict[str, int], dict[int, int], bool]] = []
        for i in range(len(queues)):
            raw_stats, raw_depth, paused = replies[3 * i : 3 * i + 3]
            counts = dict.fromkeys((*STATUS_NAMES, "total"), 0)
            counts |= {n: int(v) for n, v in raw_stats.items() if n in counts}
            depth = dict.fromkeys(keys.PRIORITIES, 0)
            for priority, count in raw_depth.items():
                if int(priority) in depth:
                    depth[int(priority)] = max(0, int(count))
            found.append((counts, depth, bool(paused)))
        return found
