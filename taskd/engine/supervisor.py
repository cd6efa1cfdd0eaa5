"""Housekeeping shared by every daemon: promote due tasks, reclaim lost ones, bound memory.

Any number of daemons may run a supervisor at once: each step is one atomic script, so two
supervisors never double-promote or double-reclaim. Sleeps only between sweeps, waking
early for the next due delayed task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from taskd.errors import RedisUnavailable
from taskd.keys import HANDBACK, PRIORITIES
from taskd.store import Store

log = structlog.get_logger(__name__)
EXPIRE_BATCH = 1000  # finished tasks deleted per script call
EXPIRE_ROUNDS = 50  # script calls per housekeeping pass at most


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Timings (from Settings.tasks)."""

    lease_s: float = 30.0
    sweep_interval_s: float = 1.0
    retention_s: float = 86_400.0
    housekeeping_every: int = 10  # sweeps between retention / trim / dead-consumer passes
    submit_grace_s: float = 300.0  # a workflow submit unfinished this long stopped for good
    queues: tuple[str, ...] | None = None  # None = every queue that ever had a task


class Supervisor:
    """Runs sweeps until stopped."""

    def __init__(self, store: Store, consumer: str, config: SupervisorConfig) -> None:
        self.store = store
        self.consumer = consumer
        self.config = config
        self._cursors: dict[tuple[str, int], str] = {}
        self._last_reclaim = float("-inf")
        self.sweeps = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``sweep_interval_s`` (sooner when a delayed task falls due), and keep
        house in a loop of its own, so a slow housekeeping pass never delays promotion."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._every(stop, self.sweep, "sweep"))
            group.create_task(self._every(stop, self.housekeep_all, "housekeeping"))

    async def _every(
        self, stop: asyncio.Event, step: Callable[[], Awaitable[float]], name: str
    ) -> None:
        failures = 0
        while not stop.is_set():
            try:
                wait = await step()
                failures = 0
            except RedisUnavailable as exc:
                failures += 1
                wait = min(5.0, 0.2 * 2**failures)
                log.warning(f"{name}_failed", error=str(exc), retry_in_s=round(wait, 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.005))

    async def housekeep_all(self) -> float:
        """Housekeeping for every queue, one at a time; returns seconds until the next pass."""
        for queue in self.config.queues or await self.store.queues():
            await self.housekeep(queue)
        expired = await self.store.expire_workflows(int(self.config.retention_s * 1000))
        repaired = await self.store.repair_workflows(int(self.config.submit_grace_s * 1000))
        if repaired:
            log.warning("workflow_submits_repaired", count=repaired)
        if expired:
            log.debug("workflows_expired", count=expired)
        return self.config.sweep_interval_s * self.config.housekeeping_every

    async def sweep(self) -> float:
        """One pass over every queue; returns seconds until the next due delayed task.

        Promotion runs on every pass (it decides when delayed tasks start); reclaiming,
        which only matters on the scale of the lease, at most every quarter lease. Queues
        are handled concurrently, so many queues do not slow the promotion of any.
        """
        wait = self.config.sweep_interval_s
        queues = list(self.config.queues or await self.store.queues())
        for queue, (moved, next_due_ms) in zip(
            queues, await self.store.promote_many(queues), strict=True
        ):
            if moved:
                log.debug("tasks_promoted", queue=queue, count=moved)
            if next_due_ms >= 0:
                wait = min(wait, next_due_ms / 1000)
        if await self.store.drain_outboxes(queues):
            wait = 0.0  # ends may have released tasks with outbox entries of their own
        now = time.monotonic()
        if now - self._last_reclaim >= min(max(self.config.lease_s / 4, 0.02), 5.0):
            self._last_reclaim = now
            await self.reclaim(queues)
            await self.fail_unrunnable(queues)
        self.sweeps += 1
        return wait

    async def reclaim(self, queues: list[str]) -> None:
        """XAUTOCLAIM entries idle past the lease, continuing each stream's cursor."""
        streams = [(q, p, self._cursors.get((q, p), "0-0")) for q in queues for p in PRIORITIES]
        results = await self.store.reclaim_many(
            streams, self.consumer, int(self.config.lease_s * 1000)
        )
        for (queue, priority, _), result in zip(streams, results, strict=True):
            self._cursors[(queue, priority)] = result.cursor
            for task_id in result.requeued:
                log.warning("task_reclaimed", task_id=task_id, queue=queue)
            for task_id in result.failed:
                log.error("task_lost", task_id=task_id, queue=queue, reason="worker lost")
            for entry_id in result.deleted:
                log.warning("reclaimed_entry_deleted", entry_id=entry_id, queue=queue)

    async def fail_unrunnable(self, queues: list[str]) -> None:
        """Fail handed-back tasks whose type no live worker of their queue runs.

        A worker never runs a type it lacks: it hands such a task back to the front of its
        level, where one that runs it takes it. Only when no live worker of the queue
        lists the type (heartbeats carry ``task_types``) does the task fail. A queue with
        no live worker, or one whose heartbeat lists no types (an older build, which
        fails such tasks itself), is left alone.
        """
        workers = await self.store.workers()
        for queue in queues:
            serving = [w for w in workers if queue in _queue_names(w.get("queues"))]
            if not serving or any(not isinstance(w.get("task_types"), list) for w in serving):
                continue
            types = {str(t) for w in serving for t in w["task_types"]}
            for task_id in await self.store.fail_unrunnable(queue, sorted(types)):
                log.error("task_unrunnable", task_id=task_id, queue=queue)

    async def expire(self, queue: str) -> int:
        """Delete finished tasks past retention, batch after batch until caught up.

        One batch per pass capped expiry at EXPIRE_BATCH tasks per housekeeping interval,
        below a busy queue's throughput, so Redis memory grew without bound. Batches stay
        separate script calls, so Redis is never blocked for long.
        """
        retention_ms = int(self.config.retention_s * 1000)
        expired = 0
        for _ in range(EXPIRE_ROUNDS):
            removed = await self.store.expire(queue, retention_ms, EXPIRE_BATCH)
            expired += removed
            if removed < EXPIRE_BATCH:
                break
        return expired

    async def housekeep(self, queue: str) -> None:
        """Expire finished tasks, trim streams, forget consumers that died holding nothing."""
        expired = await self.expire(queue)
        trimmed = await self.store.trim(queue)
        if expired or trimmed:
            log.debug("housekeeping", queue=queue, expired=expired, trimmed=trimmed)
        for priority, (found, now) in (await self.store.verify_depth(queue)).items():
            log.warning("depth_corrected", queue=queue, priority=priority, found=found, now=now)
        lease_ms = int(self.config.lease_s * 1000)
        for name, (pending, idle_ms) in (await self.store.consumers(queue)).items():
            if name in (self.consumer, HANDBACK) or pending or idle_ms < lease_ms:
                continue
            # The look above is only a filter: the script checks again and deletes in one
            # step, so a consumer that fetched since (a paused daemon resuming) is kept.
            if not await self.store.is_alive(name) and await self.store.delete_consumer(
                queue, name, lease_ms
            ):
                log.info("consumer_removed", consumer=name, queue=queue)


def _queue_names(specs: object) -> set[str]:
    """Queue names of a heartbeat's ``queues`` (specs like ``"emails:4"``)."""
    if not isinstance(specs, list):
        return set()
    return {str(spec).partition(":")[0] for spec in specs}
