"""Running blocking, CPU-heavy handler work in a thread with progress and cancellation.

Python cannot interrupt a thread, so the work calls :meth:`ThreadProgress.update` between
chunks; that is where a cancelled or timed-out task stops (``Cancelled``), and where
progress is forwarded to the loop — throttled, because each report crosses threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from taskd.engine.context import Context

T = TypeVar("T")
MIN_REPORT_INTERVAL_S = 0.05


class Cancelled(Exception):
    """The awaiting coroutine was cancelled; the thread should stop and clean up."""


class ThreadProgress:
    """Progress handle for a function running in a worker thread.

    ``start``/``end`` map this stage's 0..1 fraction into a slice of the task's 0-100,
    so a two-pass job can report each pass into its own half.
    """

    def __init__(self, ctx: Context, start: float = 0.0, end: float = 99.0) -> None:
        self.ctx = ctx
        self.start = start
        self.end = end
        self.stop = threading.Event()
        self._last_percent = -1
        self._last_time = 0.0

    def check(self) -> None:
        """Raise Cancelled when the task was cancelled or timed out."""
        if self.stop.is_set() or self.ctx.cancel_requested:
            raise Cancelled

    def update(self, fraction: float, message: str) -> None:
        """Report ``fraction`` (0..1) of this stage done; raises Cancelled when stopping."""
        self.check()
        fraction = min(1.0, max(0.0, fraction))
        percent = int(self.start + fraction * (self.end - self.start))
        now = time.monotonic()
        if percent != self._last_percent and now - self._last_time >= MIN_REPORT_INTERVAL_S:
            self._last_percent, self._last_time = percent, now
            self.ctx.report(percent, message)

    def stage(self, start: float, end: float) -> ThreadProgress:
        """A handle for a sub-range of this one, sharing its stop flag."""
        child = ThreadProgress(self.ctx, start, end)
        child.stop = self.stop
        return child


async def run_in_thread(ctx: Context, work: Callable[[ThreadProgress], T]) -> T:
    """Run ``work(progress)`` in a thread; on cancellation, tell it to stop and re-raise."""
    progress = ThreadProgress(ctx)
    try:
        return await asyncio.to_thread(work, progress)
    except asyncio.CancelledError:
        progress.stop.set()
        raise
