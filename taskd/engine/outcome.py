"""How an attempt ended, and writing that to Redis: the one place that turns a handler's
end into a script call.

Successes and the runners' starts share one coalesced round trip (``Store.steps``): a
runner's completion goes out in the background, its next start waits for the batch, and
each batch writes completions before starts, so a runner is never counted twice as
processing. Every write is safe to repeat after a lost reply: the scripts answer a
repeated write of the same attempt with what the first one did.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
import structlog

from taskd.engine.coalesce import Coalescer
from taskd.errors import RedisUnavailable, StaleAttempt, TaskNotFound
from taskd.log import enabled
from taskd.model import Task
from taskd.store import Store
from taskd.store.replies import is_code, raise_for
from taskd.store.worker import Step

log = structlog.get_logger(__name__)
WRITE_RETRY_S = 0.5  # pause between writes of an outcome while Redis is away


class Kind(StrEnum):
    """How one attempt ended."""

    COMPLETED = "completed"  # the handler returned
    RETRY = "retry"  # it raised: retry after a back-off if attempts remain
    FAIL = "fail"  # it raised Fail (or cannot be run): no retry
    CANCEL = "cancel"  # it was cancelled on request
    RELEASE = "release"  # handed back unstarted or at shutdown: no attempt used


@dataclass(slots=True)
class Outcome:
    """How one attempt ended, before it is written to Redis."""

    kind: Kind
    result: Any = None
    error: str = ""
    delay_s: float | None = None


def backoff_s(retry_count: int, base_s: float, max_s: float) -> float:
    """Exponential back-off with jitter in [d/2, d], d = min(max, base * 2**n)."""
    ceiling = min(max_s, base_s * float(2 ** min(retry_count, 32)))
    jitter: float = random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto
    return ceiling / 2 + jitter


class OutcomeWriter:
    """Writes starts and outcomes of one pool; counts what it wrote."""

    def __init__(
        self,
        store: Store,
        consumer: str,
        *,
        lease_s: float,
        backoff: tuple[float, float],
        on_free: Callable[[Task], None],
    ) -> None:
        self.store = store
        self.consumer = consumer
        self.lease_s = lease_s
        self.backoff = backoff
        self._on_free = on_free
        self._steps: Coalescer[Step, str] = Coalescer(store.steps)
        self._writing: set[asyncio.Future[Any]] = set()  # outcomes written off the runners
        self.finishing = 0  # held tasks whose handler is done and whose outcome is written
        self.completed = 0
        self.failed = 0
        #: Called with (task type, outcome status, run time in s) after each attempt.
        self.finished_hooks: list[Callable[[str, str, float], None]] = []

    async def begin(self, task: Task) -> Task | None:
        """Start a reserved task (reserved -> processing), retried while Redis is away
        (begin is safe to repeat); None when it is no longer this worker's to run."""
        deadline = time.monotonic() + self.lease_s / 2
        while True:
            try:
                reply = await self._steps.submit(("begin", self.consumer, task, b""))
                break
            except RedisUnavailable:
                if time.monotonic() > deadline:
                    return None  # the renewal hands it back, or the lease lapses unstarted
                await asyncio.sleep(WRITE_RETRY_S)
        if is_code(reply):
            log.info("reserved_task_dropped", task_id=task.id, reason=reply)
            return None
        task.started_at = int(reply)
        return task

    def complete_soon(self, task: Task, result: bytes, duration_s: float) -> None:
        """Write a success in the background, batched with others finishing now."""
        self.finishing += 1
        done = functools.partial(self._on_completed, task, result, duration_s)
        self._steps.add(("complete", self.consumer, task, result), done)

    def _on_completed(
        self, task: Task, result: bytes, duration_s: float, written: str | BaseException
    ) -> None:
        if isinstance(written, RedisUnavailable | asyncio.CancelledError):
            # The slow path retries while Redis is away (a repeat is answered as success).
            outcome = Outcome(Kind.COMPLETED, orjson.loads(result))
            self.finish_in_background(task, outcome, duration_s, counted=True)
            return
        self.finishing -= 1
        if isinstance(written, BaseException):
            log.error("completion_write_failed", error=str(written), task_id=task.id)
        elif written == "completed":
            self.completed += 1
            self._finished(task, "completed", duration_s, "")
        else:
            log.warning("stale_attempt_refused", reason=written, task_id=task.id)
        self._on_free(task)

    def finish_in_background(
        self, task: Task, outcome: Outcome, duration_s: float, *, counted: bool = False
    ) -> None:
        """Write an outcome off the runner (a success whose write failed, an abandoned
        handler's); shutdown waits for it."""
        writer = asyncio.ensure_future(self.finish(task, outcome, duration_s, counted=counted))
        self._writing.add(writer)
        writer.add_done_callback(self._writing.discard)

    async def finish(
        self, task: Task, outcome: Outcome, duration_s: float, *, counted: bool = False
    ) -> None:
        """Write the outcome, retrying while Redis is briefly away; free the slot.
        ``counted``: the task is already counted in ``finishing``."""
        if not counted:
            self.finishing += 1
        try:
            status = await self._write_retrying(task, outcome)
            self._finished(task, status, duration_s, outcome.error)
        except (StaleAttempt, TaskNotFound) as exc:
            log.warning("stale_attempt_refused", reason=str(exc), task_id=task.id)
        finally:
            self.finishing -= 1
            self._on_free(task)

    async def _write_retrying(self, task: Task, outcome: Outcome) -> str:
        deadline = time.monotonic() + self.lease_s
        while True:
            try:
                return await self._write(task, outcome)
            except RedisUnavailable:
                if time.monotonic() > deadline:
                    return "abandoned"  # the lease expired; another worker takes it
                await asyncio.sleep(WRITE_RETRY_S)

    async def _write(self, task: Task, outcome: Outcome) -> str:
        if outcome.kind == Kind.COMPLETED:
            try:
                result = orjson.dumps(outcome.result)
            except TypeError as exc:
                error = f"result is not JSON-serialisable: {exc}"
                return await self._fail(task, Outcome(Kind.FAIL, error=error))
            written = await self._steps.submit(("complete", self.consumer, task, result))
            raise_for(written, task_id=task.id, attempt=task.attempt)
            self.completed += 1
            return "completed"
        if outcome.kind == Kind.RELEASE:
            return await self.store.release(task)
        return await self._fail(task, outcome)

    async def _fail(self, task: Task, outcome: Outcome) -> str:
        delay = outcome.delay_s
        if delay is None:
            delay = backoff_s(task.retry_count, *self.backoff)
        # retry | fail | cancel: fail.lua's modes
        status = await self.store.fail(task, outcome.error, outcome.kind, int(delay * 1000))
        if status == "failed":
            self.failed += 1
        return status

    def _finished(self, task: Task, status: str, duration_s: float, error: str) -> None:
        for hook in self.finished_hooks:
            hook(task.task_type, status, duration_s)
        if enabled("info"):
            log.info(
                "task_finished",
                outcome=status,
                duration_ms=round(duration_s * 1000, 2),
                error=error or None,
                task_id=task.id,
                task_type=task.task_type,
                attempt=task.attempt,
            )

    async def drain(self) -> None:
        """Wait until every outcome queued or being written (retries included) is written."""
        while self._writing or self._steps.pending:
            await self._steps.drained()
            await asyncio.gather(*list(self._writing), return_exceptions=True)
            await asyncio.sleep(0)
