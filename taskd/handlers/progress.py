"""Running blocking, CPU-heavy handler work in a thread with progress and cancellation.

Python cannot interrupt a thread, so the work calls :meth:`ThreadProgress.update` between
chunks; that is where a cancelled or timed-out task stops (``Cancelled``), and where
progress is forwarded to the loop — throttled, because each report crosses threads.

The loop must never stall behind this work. Python threads share one interpreter lock,
and the event loop's thread needs it after every wait: with eight crunching threads it
queued behind all of them (hundreds of ms of lag, the API past its deadline). So the
crunching threads take turns (:class:`Turns`): one runs at a time, for a slice of
SLICE_S, handing over at its next ``update`` — the loop competes with one thread, not
eight, and every task advances. While any crunches, the interpreter's switch interval is
1 ms instead of 5 (the longest the loop waits for the lock each time it wakes up).
Each run has its own thread, outside the loop's default executor, so quick thread work
(an email's .eml file) never waits behind crunching.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from taskd.engine.context import Context

T = TypeVar("T")
MIN_REPORT_INTERVAL_S = 0.05
SLICE_S = 0.01  # how long one crunching thread runs before the next one's turn
SWITCH_INTERVAL_S = 0.001  # while crunching (Python's default is 0.005)


class Turns:
    """First come, first served turns to run CPU-heavy work, one thread at a time."""

    def __init__(self, slice_s: float = SLICE_S) -> None:
        self.slice_s = slice_s
        self._changed = threading.Condition()
        self._next = 0  # the next ticket to hand out
        self._serving = 0  # the ticket whose turn it is
        self._runs = 0  # runs between their first turn and their end
        self._interval = sys.getswitchinterval()

    def started(self) -> None:
        """A run begins (before its first turn): hand the lock over faster meanwhile."""
        with self._changed:
            if self._runs == 0:
                self._interval = sys.getswitchinterval()
                sys.setswitchinterval(min(self._interval, SWITCH_INTERVAL_S))
            self._runs += 1

    def finished(self) -> None:
        """A run ended (after its last turn)."""
        with self._changed:
            self._runs -= 1
            if self._runs == 0:
                sys.setswitchinterval(self._interval)

    def take(self) -> None:
        """Block until it is this thread's turn."""
        with self._changed:
            ticket = self._next
            self._next += 1
            while self._serving != ticket:
                self._changed.wait()

    def give(self) -> None:
        """End this thread's turn."""
        with self._changed:
            self._serving += 1
            self._changed.notify_all()


# One per process, as the interpreter lock it shares out is.
TURNS = Turns()


class _Turn:
    """When the current turn of one run began (shared by its stages)."""

    def __init__(self) -> None:
        self.began = 0.0


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
        self._turn = _Turn()

    def take_turn(self) -> None:
        """Wait for the first turn (in the work's thread)."""
        TURNS.take()
        self._turn.began = time.monotonic()

    def give_turn(self) -> None:
        """End the last turn (in the work's thread)."""
        TURNS.give()

    def pause(self) -> None:
        """Let the next crunching thread run if this one's slice is over."""
        if time.monotonic() - self._turn.began >= TURNS.slice_s:
            TURNS.give()
            self.take_turn()

    def check(self) -> None:
        """Raise Cancelled when the task was cancelled or timed out."""
        if self.stop.is_set() or self.ctx.cancel_requested:
            raise Cancelled

    def update(self, fraction: float, message: str) -> None:
        """Report ``fraction`` (0..1) of this stage done; raises Cancelled when stopping.
        Call it often (every few ms of work): it is also where threads take turns."""
        self.pause()
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
        child._turn = self._turn
        return child


async def run_in_thread(ctx: Context, work: Callable[[ThreadProgress], T]) -> T:
    """Run ``work(progress)`` in a thread of its own, taking turns with other crunching
    threads; on cancellation, tell it to stop (at its next update), wait until it has,
    and re-raise."""
    progress = ThreadProgress(ctx)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def main() -> None:
        TURNS.started()
        progress.take_turn()
        try:
            result = work(progress)
        except BaseException as exc:  # handed to the awaiting coroutine
            _settle(loop, done, exc)
        else:
            _settle(loop, done, result)
        finally:
            progress.give_turn()
            TURNS.finished()

    threading.Thread(target=main, name=f"taskd-cpu-{ctx.task_id[:8]}", daemon=True).start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        progress.stop.set()
        # The cancel (or timeout) is recorded once this returns: wait for the thread to
        # stop at its next update, so a retry never runs beside it. A thread that never
        # looks is abandoned with its handler after the pool's cancel grace.
        with contextlib.suppress(BaseException):
            await done
        raise


def _settle(loop: asyncio.AbstractEventLoop, done: asyncio.Future[Any], outcome: Any) -> None:
    def apply() -> None:
        if done.done():  # the awaiting coroutine was cancelled
            return
        if isinstance(outcome, BaseException):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
        loop.call_soon_threadsafe(apply)
