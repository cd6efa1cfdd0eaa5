"""Event-loop lag: how late a periodic timer fires is how long something blocked the loop.

A handler that calls blocking code on the loop (``time.sleep``, a synchronous HTTP client,
a long CPU loop) stalls every task, lease renewal and HTTP request of the process. This
monitor makes that visible: a ``event_loop_blocked`` warning above a threshold, naming the
task types that were running and whom to suspect, and the last and largest lag as metrics,
plus a histogram of every measurement (a percentile over time, which one gauge cannot give).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from prometheus_client import Gauge, Histogram

log = structlog.get_logger(__name__)
BUILTIN_PACKAGE = "taskd.handlers."
# Bounds around the targets that matter: 50 ms (issue 16's p99), the 500 ms warning, and
# the 1 s after which the API answers 503.
LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def blame(running: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """What to tell the operator about a stall, from the (task type, handler module) pairs
    that were running: only user handlers are asked to change; built-in ones never block
    the loop by design, so a stall while only they ran points at the machine (or at taskd)."""
    pairs = sorted(set(running))
    users = [name for name, module in pairs if not module.startswith(BUILTIN_PACKAGE)]
    if users:
        return {
            "running": users,
            "hint": "one of these handlers may run blocking code on the event loop; make it "
            "a plain function (it then runs in a thread) or await non-blocking calls",
        }
    if pairs:
        return {
            "running": [name for name, _ in pairs],
            "hint": "only built-in handlers were running, and they do not block the loop: "
            "the machine is probably short of CPU; if it is not, please report this",
        }
    return {
        "running": [],
        "hint": "no handler was running: the process or the machine stalled (CPU "
        "starvation, swapping, a paused VM)",
    }


class LoopLag:
    """Measures the loop's lag every ``interval_s``; warns above ``warn_s``."""

    def __init__(
        self,
        interval_s: float = 0.25,
        warn_s: float = 0.5,
        running: Callable[[], Iterable[tuple[str, str]]] = tuple,
    ) -> None:
        """``running`` names the (task type, handler module) pairs running now."""
        self.interval_s = interval_s
        self._running = running
        self.warn_s = warn_s
        self.last_s = 0.0
        self.max_s = 0.0
        self.blocked = 0  # how many measurements were above the threshold
        # Unregistered until ``expose``: a monitor without a registry still counts.
        # (Its own name: the gauge of the last measurement owns taskd_event_loop_lag_seconds.)
        self.histogram = Histogram(
            "taskd_event_loop_lag_sampled_seconds",
            "How late the event loop ran the lag timer, every measurement.",
            buckets=LAG_BUCKETS_S,
            registry=None,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Measure until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            due = loop.time() + self.interval_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await stop.wait()
            if not stop.is_set():
                self.observe(loop.time() - due)

    def observe(self, lag_s: float) -> None:
        """Record one measurement (seconds the timer fired late)."""
        lag_s = max(0.0, lag_s)
        self.last_s = lag_s
        self.max_s = max(self.max_s, lag_s)
        self.histogram.observe(lag_s)
        if lag_s > self.warn_s:
            self.blocked += 1
            log.warning(
                "event_loop_blocked",
                lag_ms=round(lag_s * 1000, 1),
                threshold_ms=round(self.warn_s * 1000, 1),
                **blame(self._running()),
            )

    def healthy(self, limit_s: float) -> bool:
        """False while the last measured lag exceeds ``limit_s``."""
        return self.last_s <= limit_s

    def expose(self, registry: Any) -> None:
        """Add the lag gauges and the histogram to a prometheus_client registry."""
        last = Gauge(
            "taskd_event_loop_lag_seconds",
            "How late the event loop ran a timer, last measurement.",
            registry=registry,
        )
        last.set_function(lambda: self.last_s)
        peak = Gauge(
            "taskd_event_loop_lag_max_seconds",
            "The largest event-loop lag measured since start.",
            registry=registry,
        )
        peak.set_function(lambda: self.max_s)
        registry.register(self.histogram)
