"""Holding on to tasks: lease renewal, the heartbeat, and listening for cancel requests.

A cancel request reaches a worker two ways: at once by pub/sub, and at the latest by the
next lease renewal, whose reply names the held tasks flagged for cancelling, so a request
published while the subscription was down is not lost. The renewal also tells the worker
which held tasks are no longer its own, and hands back entries a fetch reserved in its
name whose reply never arrived.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from taskd.errors import RedisUnavailable
from taskd.model import Task
from taskd.store import Store
from taskd.store.records import Renewal

log = structlog.get_logger(__name__)


class Lease:
    """Keeps one pool's leases, heartbeat and cancel subscription going until closed."""

    def __init__(
        self,
        store: Store,
        consumer: str,
        lease_s: float,
        *,
        held: Callable[[], list[Task]],
        on_cancel: Callable[[str], None],
        on_lost: Callable[[str], None],
        info: Callable[[], dict[str, Any]],
        queues: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.consumer = consumer
        self.lease_s = lease_s
        self._held = held
        self._on_cancel = on_cancel
        self._on_lost = on_lost
        self._info = info
        self._queues = list(queues)
        self.closing = False
        #: Set once the first heartbeat was written (or tried): from then on other nodes
        #: see this worker's task types (taskd.engine.known) and accept submits of them.
        self.announced = asyncio.Event()
        self._static = {
            "consumer": consumer,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": time.time(),
        }

    async def renew_loop(self) -> None:
        """Renew leases and the heartbeat every third of the lease."""
        interval = self.lease_s / 3
        while True:
            try:
                await self.renew_once()
                await self.store.heartbeat(
                    self.consumer,
                    self._static | self._info() | {"heartbeat_at": time.time()},
                    ttl_s=self.lease_s,
                )
            except RedisUnavailable as exc:
                log.warning("lease_renewal_failed", error=str(exc))
            self.announced.set()
            if self.closing:  # checked after the calls: redis-py may swallow a cancel
                return
            await asyncio.sleep(interval)

    async def renew_once(self) -> Renewal:
        """One renewal: act on the cancel requests and lost holdings it reports."""
        # An entry in this consumer's name that it has not held for half a lease is an
        # orphan (held ones are renewed every third of one; a fetch in flight is younger).
        renewal = await self.store.renew(
            self.consumer, self._held(), int(self.lease_s * 500), self._queues
        )
        for task_id in renewal.cancels:
            self._on_cancel(task_id)
        for task_id in renewal.lost:
            self._on_lost(task_id)
        for task_id in renewal.orphans:
            log.warning("orphaned_task_handed_back", task_id=task_id)
        return renewal

    async def cancel_listener(self) -> None:
        """Pass every published cancel request to the pool."""
        while not self.closing:
            requests = self.store.cancel_requests()
            try:
                while not self.closing:
                    task_id = await requests.get()
                    if task_id is not None:
                        self._on_cancel(task_id)
            except RedisUnavailable:
                await asyncio.sleep(1.0)
            finally:
                await requests.close()
