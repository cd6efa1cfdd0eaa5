"""Reading the per-minute history the scripts count (layout in :mod:`taskd.history`)."""

from __future__ import annotations

from typing import Any

from taskd.history import BUCKET_S, parse_field
from taskd.store.base import StoreBase
from taskd.store.translate import translated

HMGET_CHUNK = 2_000  # fields per HMGET: a week of one busy queue is a few round trips


class HistoryOps(StoreBase):
    """Per-minute counts over queues and task types."""

    async def redis_minute(self) -> int:
        """The current minute by Redis's clock, the one the scripts count with."""
        async with translated():
            seconds, _ = await self.redis.time()
        return int(seconds) // BUCKET_S

    async def history(
        self, first: int, last: int, queue: str | None = None, task_type: str | None = None
    ) -> list[tuple[int, str]]:
        """(minute, packed counts) of every history field from minute ``first`` to ``last``
        (inclusive) of one or all queues and one or all task types.

        Left packed: :func:`taskd.history.sum_by_minute` unpacks them, in a thread when a
        week of fields is more than the event loop should spend at once.
        """
        queues = [queue] if queue else await self.queues()
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.zrangebyscore(self.keys(q).history_index, first, last)
            wanted: list[tuple[str, list[str]]] = []
            for q, found in zip(queues, await pipe.execute(), strict=True):
                names = [n for n in found if task_type in (None, parse_field(n)[1])]
                for at in range(0, len(names), HMGET_CHUNK):
                    wanted.append((q, names[at : at + HMGET_CHUNK]))
            pipe = self.redis.pipeline(transaction=False)
            for q, names in wanted:
                pipe.hmget(self.keys(q).history, names)
            replies: list[Any] = await pipe.execute() if wanted else []
        return [
            (parse_field(name)[0], packed)
            for (_, names), values in zip(wanted, replies, strict=True)
            for name, packed in zip(names, values, strict=True)
            if packed is not None  # dropped between the two round trips
        ]
