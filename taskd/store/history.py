"""Reading the per-minute history the scripts count (layout in :mod:`taskd.history`)."""

from __future__ import annotations

from typing import Any

from taskd.history import BUCKET_S, Counts, parse_field
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
    ) -> dict[int, Counts]:
        """Counts per minute from ``first`` to ``last`` (inclusive), summed over one or all
        queues and one or all task types; minutes with nothing are left out."""
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
        by_minute: dict[int, Counts] = {}
        for (_, names), values in zip(wanted, replies, strict=True):
            for name, packed in zip(names, values, strict=True):
                if packed is None:  # dropped between the two round trips
                    continue
                minute = parse_field(name)[0]
                by_minute.setdefault(minute, Counts()).add(Counts.decode(packed))
        return by_minute
