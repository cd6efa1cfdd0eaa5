"""What a handler receives besides its payload: the task, progress reporting, cancellation."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from taskd.config import Settings
from taskd.errors import ValidationError
from taskd.model import Task

if TYPE_CHECKING:
    from taskd.store import Store

ProgressSink = Callable[[Task, int, str], Awaitable[object]]


class Context:
    """Passed to every handler call; one per attempt."""

    def __init__(
        self,
        task: Task,
        sink: ProgressSink,
        *,
        interval_s: float,
        loop: asyncio.AbstractEventLoop,
        settings: Settings | None = None,
        store: Store | None = None,
    ) -> None:
        self.task = task
        #: The daemon's settings (None when a pool runs without them, as in some tests).
        self.settings = settings
        #: The store, for handlers that report on the queue itself.
        self.store = store
        self._sink = sink
        self._interval_s = interval_s
        self._loop = loop
        self._last_write = 0.0
        self.cancel_requested = False
        #: Workflow tasks: each dependency's result by key ({"error", "status"} for a
        #: dependency that failed or was cancelled, seen by ``run_on_failure`` tasks).
        self.parents: dict[str, Any] = {}

    @functools.cached_property
    def log(self) -> Any:
        """A logger whose lines carry the task's id, type and attempt."""
        return structlog.get_logger("taskd.handler")

    @property
    def task_id(self) -> str:
        """The task's id."""
        return self.task.id

    @property
    def attempt(self) -> int:
        """1 for the first run, growing with every redelivery or retry."""
        return self.task.attempt

    async def progress(self, percent: float, message: str = "") -> None:
        """Report progress (0-100). Writes are rate-limited; 100 is always written."""
        value = _check_percent(percent)
        now = time.monotonic()
        if value < 100 and now - self._last_write < self._interval_s:
            return
        self._last_write = now
        if await self._sink(self.task, value, message) == 2:
            self.cancel_requested = True

    def report(self, percent: float, message: str = "") -> None:
        """Thread-safe progress for synchronous handlers running in the executor."""
        asyncio.run_coroutine_threadsafe(self.progress(percent, message), self._loop)


def _check_percent(percent: float) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
        raise ValidationError("progress", "must be a number from 0 to 100")
    return int(percent)
