"""Enqueues periodic tasks (``[[schedule]]``): exactly once per occurrence.

Policy for missed occurrences: a schedule seen for the first time starts with its next
occurrence (nothing is back-filled). After downtime, the most recent missed occurrence
runs once and older ones are skipped, like cron with anacron's coalescing.

Each schedule has a marker in Redis (the last occurrence reached). Checking it, enqueuing
the occurrence and moving it are one script (``Store.submit_occurrence``): however many
daemons race, and however long one stalls between reading the clock and enqueuing, an
occurrence is enqueued once, and a daemon whose occurrence went stale meanwhile looks
again rather than enqueue an old one. The first daemon to reach the script sets the
marker (the first-occurrence rule above holds however many daemons see the schedule
first on either side of a boundary). Each task also carries the unique key
``schedule:<name>:<ms>``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import orjson
import structlog

from taskd.config.schedule import Schedule
from taskd.errors import RedisUnavailable
from taskd.model import TaskSpec, make_spec
from taskd.store import Store

log = structlog.get_logger(__name__)


class Scheduler:
    """Checks every schedule at its next occurrence (by Redis's clock)."""

    def __init__(
        self,
        store: Store,
        schedules: Sequence[Schedule],
        *,
        max_retries: int = 3,
        timeout_s: float = 300.0,
    ) -> None:
        self.store = store
        self.schedules = list(schedules)
        self.max_retries = max_retries
        self.timeout_s = timeout_s

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until stopped, sleeping until the nearest next occurrence."""
        while self.schedules and not stop.is_set():
            try:
                wait = await self.tick()
            except RedisUnavailable as exc:
                log.warning("schedule_tick_failed", error=str(exc))
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    async def tick(self) -> float:
        """Enqueue every due occurrence; return seconds until the next one (at most 60)."""
        now = await self.store.time_ms()
        wait_ms = 60_000
        for schedule in self.schedules:
            await self._check(schedule, now)
            wait_ms = min(wait_ms, schedule.next_ms(now) - now)
        return max(wait_ms, 5) / 1000 + 0.005

    async def _check(self, schedule: Schedule, now: int) -> None:
        for _ in range(3):  # a stale occurrence is looked at again with Redis's newer time
            occurrence, next_ms = schedule.latest_ms(now), schedule.next_ms(now)
            task, now = await self.store.submit_occurrence(
                self._spec(schedule, occurrence), schedule.name, occurrence, next_ms
            )
            if task is not None:
                log.info(
                    "schedule_enqueued",
                    schedule=schedule.name,
                    occurrence_ms=occurrence,
                    task_id=task.id,
                )
            if now < next_ms:
                return

    def _spec(self, schedule: Schedule, occurrence: int) -> TaskSpec:
        return make_spec(
            schedule.task_type,
            orjson.loads(orjson.dumps(schedule.payload)),
            name=f"{schedule.name} @ {occurrence}",
            priority=schedule.priority,
            queue=schedule.queue,
            unique_key=f"schedule:{schedule.name}:{occurrence}",
            default_max_retries=self.max_retries,
            default_timeout_s=self.timeout_s,
        )
