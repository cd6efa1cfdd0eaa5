"""Prometheus metrics for ``/metrics``, in one registry per application (no global state).

Per-process counters (submitted through this process's API; completed, failed and run
time on this process's workers, read from the event stream by worker name) can be summed
over processes. Gauges that describe the shared queue (tasks by status, queue depth) are
read from Redis at scrape time, so every process reports the same values for them: use
``max`` rather than ``sum`` across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from taskd.keys import PRIORITIES
from taskd.model import STATUS_NAMES
from taskd.store import Store

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_ATTEMPT_ENDS = frozenset({"completed", "failed", "retrying", "cancelled"})


class Metrics:
    """The application's metrics and how they are fed."""

    def __init__(self, consumer: str | None, clients: Callable[[], int]) -> None:
        self.consumer = consumer
        self.registry = r = CollectorRegistry()
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.tasks = Gauge(
            "taskd_tasks", "Tasks by status over all queues (shared).", ["status"], registry=r
        )
        self.depth = Gauge(
            "taskd_queue_depth",
            "Ready tasks not yet fetched (shared).",
            ["queue", "priority"],
            registry=r,
        )
        self._submitted = Counter(
            "taskd_tasks_submitted",
            "Tasks submitted through this process's HTTP API.",
            ["task_type"],
            registry=r,
        )
        self._completed = Counter(
            "taskd_tasks_completed",
            "Tasks completed by this process's workers.",
            ["task_type"],
            registry=r,
        )
        self._failed = Counter(
            "taskd_tasks_failed",
            "Tasks that failed for good on this process's workers.",
            ["task_type"],
            registry=r,
        )
        self._duration = Histogram(
            "taskd_task_duration_seconds",
            "Run time of attempts on this process's workers.",
            ["task_type", "outcome"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        ws_clients = Gauge("taskd_websocket_clients", "Connected WebSocket clients.", registry=r)
        ws_clients.set_function(lambda: float(clients()))
        self.ws_dropped = Counter(
            "taskd_websocket_dropped", "WebSocket clients dropped for falling behind.", registry=r
        )
        self.redis_latency = Histogram(
            "taskd_redis_roundtrip_seconds",
            "Round-trip time of PING to Redis.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def submitted(self, task_type: str, count: int = 1) -> None:
        """Count tasks created through the API."""
        self._submitted.labels(task_type).inc(count)

    def task_finished(self, task_type: str, status: str, duration_s: float) -> None:
        """Pool hook: count an attempt this process's workers finished, with its run time.

        Fed by the pool directly (not from the event stream), so it costs nothing per event
        and needs no fields the events do not carry.
        """
        if status not in _ATTEMPT_ENDS:
            return
        children = self._children.get((task_type, status))
        if children is None:  # labels() costs a lock and a tuple per call: once per pair
            count = self._completed if status == "completed" else self._failed
            children = self._children[(task_type, status)] = (
                count.labels(task_type) if status in ("completed", "failed") else None,
                self._duration.labels(task_type, status),
            )
        counter, duration = children
        if counter is not None:
            counter.inc()
        duration.observe(duration_s)

    async def refresh(self, store: Store) -> None:
        """Read the shared gauges from Redis and time a round trip."""
        started = time.perf_counter()
        await store.ping()
        self.redis_latency.observe(time.perf_counter() - started)
        counts = await store.stats()
        for status in STATUS_NAMES:
            self.tasks.labels(status).set(counts.get(status, 0))
        self.depth.clear()
        for queue in await store.queues():
            depth = await store.depth_by_priority(queue)
            for priority in PRIORITIES:
                self.depth.labels(queue, str(priority)).set(depth.get(priority, 0))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
