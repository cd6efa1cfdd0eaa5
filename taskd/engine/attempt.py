"""One attempt's supervision: run a handler under its timeout in a context of its own,
stop it on a cancel request, a timeout or shutdown, and abandon it when it ignores that.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from taskd.engine.context import Context, ProgressSink
from taskd.engine.inline import InContext
from taskd.engine.outcome import Kind, Outcome
from taskd.engine.parents import with_parents
from taskd.engine.registry import TaskType
from taskd.errors import Fail, Retry, ValidationError, describe
from taskd.log import bind_task_fields
from taskd.model import Task

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Run:
    """One attempt a runner is executing: what the pool needs to stop it from outside."""

    task: Task
    runner: asyncio.Task[Any]
    started: float
    stop: str = ""  # why the pool cancelled the handler: cancel | timeout | shutdown
    cancels: int = 0  # cancel() calls on the runner, undone once the handler is left
    in_handler: bool = True
    abandoned: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class AttemptSettings:
    """What supervision needs to know of the pool's configuration."""

    consumer: str
    progress_interval_s: float
    cancel_grace_s: float
    settings: Any = None  # taskd.config.Settings, handed to handlers' contexts
    debug: bool = False


class Attempts:
    """The attempts running in one pool, and the means to stop each."""

    def __init__(
        self,
        config: AttemptSettings,
        store: Any,
        progress: ProgressSink,
        on_abandoned: Callable[[Run, Outcome], None],
    ) -> None:
        self.config = config
        self.store = store
        self.running: dict[str, Run] = {}
        self._progress = progress
        self._on_abandoned = on_abandoned
        self.executor: ThreadPoolExecutor | None = None
        self.base_context = contextvars.copy_context()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def supervise(
        self, task: Task, handler: TaskType, runner: asyncio.Task[None], started: float
    ) -> tuple[Outcome | None, bool]:
        """Run the handler in this runner under its timeout, in a context of its own (see
        taskd.engine.inline): its outcome (None when it ignored cancellation and was
        abandoned) and whether it ever waited."""
        loop = asyncio.get_running_loop()
        ctx = Context(
            task,
            self._progress,
            interval_s=self.config.progress_interval_s,
            loop=loop,
            settings=self.config.settings,
            store=self.store,
        )
        run = Run(task, runner, started)
        self.running[task.id] = run
        run.timer = loop.call_later(task.timeout_s, self.stop, run, "timeout")
        outcome = None
        driven = InContext(self.base_context.copy(), self._invoke(handler, ctx, task))
        try:
            outcome = await driven
        except asyncio.CancelledError:
            if not run.stop:
                raise  # the runner itself is cancelled: run() is being torn down
        finally:
            run.in_handler = False
            if run.timer is not None:
                run.timer.cancel()
            for _ in range(run.cancels):
                runner.uncancel()
            if self.running.get(task.id) is run:
                del self.running[task.id]
        if run.abandoned:
            return None, True
        if run.stop == "timeout" or outcome is None:
            outcome = stopped_outcome(run)
        return outcome, driven.suspended

    def stop(self, run: Run, why: str) -> None:
        """Cancel a running handler. A cancel request leaves the timeout armed; a timeout
        or shutdown abandons the handler if it is still inside after ``cancel_grace_s``."""
        if not run.in_handler or (why == "cancel" and run.stop):
            return
        run.stop = why
        run.cancels += 1
        run.runner.cancel()
        if why != "cancel":
            if run.timer is not None:
                run.timer.cancel()
            loop = asyncio.get_running_loop()
            run.timer = loop.call_later(self.config.cancel_grace_s, self._abandon, run)

    def request_cancel(self, task_id: str) -> bool:
        """Stop a running attempt on request; False when none of that id runs here."""
        run = self.running.get(task_id)
        if run is None:
            return False
        if not run.stop:
            self.stop(run, "cancel")
            log.info("task_cancel_requested", task_id=task_id)
        return True

    def stop_all(self) -> None:
        """Shutdown past its grace period: stop every running handler."""
        for run in list(self.running.values()):
            self.stop(run, "shutdown")

    def _abandon(self, run: Run) -> None:
        """The handler ignored its cancellation: hand its outcome to the pool, which writes
        it and puts a new runner in its place."""
        if not run.in_handler:
            return
        task = run.task
        log.error(
            "handler_ignored_cancellation",
            grace_s=self.config.cancel_grace_s,
            task_id=task.id,
            task_type=task.task_type,
            attempt=task.attempt,
        )
        run.abandoned = True
        if self.running.get(task.id) is run:
            del self.running[task.id]
        self._on_abandoned(run, stopped_outcome(run))

    async def _invoke(self, handler: TaskType, ctx: Context, task: Task) -> Outcome:
        # This coroutine runs in its own copy of the context (InContext): the binding ends
        # with it.
        bind_task_fields(task.id, task.task_type, task.attempt)
        if self.config.debug:
            log.debug("task_started", worker=self.config.consumer)
        payload = task.payload
        if task.parents:
            try:
                payload = await with_parents(self.store, task, ctx)
            except ValidationError as exc:
                return Outcome(Kind.FAIL, error=exc.message.partition(": ")[2])
        try:
            if handler.is_async:
                result = await handler.func(ctx, payload)
            else:
                call = contextvars.copy_context().run
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self.executor, call, handler.func, ctx, payload)
            return Outcome(Kind.COMPLETED, result=result)
        except asyncio.CancelledError:
            raise
        except Retry as exc:
            return Outcome(Kind.RETRY, error=str(exc), delay_s=exc.delay_s)
        except Fail as exc:
            return Outcome(Kind.FAIL, error=str(exc) or "failed")
        except BaseException as exc:
            base = ctx.settings.data_dir if ctx.settings is not None else None
            return Outcome(Kind.RETRY, error=describe(exc, base))


def stopped_outcome(run: Run) -> Outcome:
    """The outcome of a handler the pool cancelled (or abandoned) for ``run.stop``."""
    if run.stop == "timeout":
        return Outcome(Kind.RETRY, error=f"timed out after {run.task.timeout_s:g}s")
    if run.stop == "cancel":
        return Outcome(Kind.CANCEL, error="cancelled on request")
    return Outcome(Kind.RELEASE)


def elapsed(run: Run) -> float:
    """Seconds since the attempt started."""
    return time.monotonic() - run.started
