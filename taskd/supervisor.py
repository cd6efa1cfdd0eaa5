"""Housekeeping shared by every daemon: promote due tasks, reclaim lost ones, bound memory.

Any number of daemons may run a supervisor at once: each step is one atomic script, so two
supervisors never double-promote or double-reclaim. Sleeps only between sweeps, waking
early for the next due delayed task.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from taskd.errors import RedisUnavailable
from taskd.keys import PRIORITIES
from taskd.store import Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Timings (from Settings.tasks)."""

    lease_s: float = 30.0
    sweep_interval_s: float = 1.0
    retention_s: float = 86_400.0
    housekeeping_every: int = 10  # sweeps between retention / trim / dead-consumer passes
    queues: tuple[str, ...] | None = None  # None = every queue that ever had a task


class Supervisor:
    """Runs sweeps until stopped."""

    def __init__(self, store: Store, consumer: str, config: SupervisorConfig) -> None:
        self.store = store
        self.consumer = consumer
        self.config = config
        self._cursors: dict[tuple[str, int], str] = {}
        self.sweeps = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``sweep_interval_s`` (sooner when a delayed task falls due)."""
        failures = 0
        while not stop.is_set():
            wait = self.config.sweep_interval_s
            try:
                wait = min(wait, await self.sweep())
                failures = 0
            except RedisUnavailable as exc:
                failures += 1
                wait = min(5.0, 0.2 * 2**failures)
                log.warning("sweep_failed", error=str(exc), retry_in_s=round(wait, 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.005))

    async def sweep(self) -> float:
        """One pass over every queue; returns seconds until the next due delayed task."""
        wait = self.config.sweep_interval_s
        housekeeping = self.sweeps % self.config.housekeeping_every == 0
        self.sweeps += 1
        for queue in self.config.queues or await self.store.queues():
            moved, next_due_ms = await self.store.promote(queue)
            if moved:
                log.debug("tasks_promoted", queue=queue, count=moved)
            if next_due_ms >= 0:
                wait = min(wait, next_due_ms / 1000)
            await self.reclaim(queue)
            if housekeeping:
                await self.housekeep(queue)
        return wait

    async def reclaim(self, queue: str) -> None:
        """XAUTOCLAIM entries idle past the lease, continuing each stream's cursor."""
        min_idle_ms = int(self.config.lease_s * 1000)
        for priority in PRIORITIES:
            cursor = self._cursors.get((queue, priority), "0-0")
            result = await self.store.reclaim(queue, priority, self.consumer, min_idle_ms, cursor)
            self._cursors[(queue, priority)] = result.cursor
            for task_id in result.requeued:
                log.warning("task_reclaimed", task_id=task_id, queue=queue)
            for task_id in result.failed:
                log.error("task_lost", task_id=task_id, queue=queue, reason="worker lost")
            for entry_id in result.deleted:
                log.warning("reclaimed_entry_deleted", entry_id=entry_id, queue=queue)

    async def housekeep(self, queue: str) -> None:
        """Expire finished tasks, trim streams, forget consumers that died holding nothing."""
        expired = await self.store.expire(queue, int(self.config.retention_s * 1000))
        trimmed = await self.store.trim(queue)
        if expired or trimmed:
            log.debug("housekeeping", queue=queue, expired=expired, trimmed=trimmed)
        lease_ms = self.config.lease_s * 1000
        for name, (pending, idle_ms) in (await self.store.consumers(queue)).items():
            if name == self.consumer or pending or idle_ms < lease_ms:
                continue
            if not await self.store.is_alive(name):
                await self.store.delete_consumer(queue, name)
                log.info("consumer_removed", consumer=name, queue=queue)
