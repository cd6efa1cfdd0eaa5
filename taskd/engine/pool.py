"""The worker pool: one fetcher feeding N runner coroutines, with leases and cancellation.

The fetcher starts at most ``concurrency + prefetch`` tasks at a time, so a task of
priority 10 submitted behind a long backlog never waits for the backlog; while the pool
is full, a watcher takes such a task in ahead of the prefetched ones, so it waits only for
the next free runner. Each runner runs its handlers itself, each in a context of its own
(taskd.engine.inline). Successes are written in the background, batched with those finishing
meanwhile and alongside the fetcher's round trips, so runners never idle through a write.
Every held entry's lease is renewed well inside ``lease_s``; a task that outlives its
timeout, or whose handler ignores cancellation, is abandoned and failed so the pool
keeps its size.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from taskd.config import Settings
from taskd.engine.coalesce import Coalescer
from taskd.engine.context import Context
from taskd.engine.fetcher import Fetcher
from taskd.engine.inline import InContext
from taskd.engine.registry import Registry, TaskType
from taskd.errors import Fail, RedisUnavailable, Retry, StaleAttempt, TaskNotFound, describe
from taskd.log import bind_task_fields, enabled
from taskd.model import Task
from taskd.store import Store

log = structlog.get_logger(__name__)
LAST = 1 << 30  # sorts after every priority: the runners' stop signals


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Tuning of one pool (from Settings.workers and Settings.tasks)."""

    queues: tuple[str, ...] = ("default",)
    concurrency: int = 4
    prefetch: int = 0
    lease_s: float = 30.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    progress_interval_s: float = 0.1
    cancel_grace_s: float = 2.0
    shutdown_grace_s: float = 30.0
    block_ms: int = 500
    rate_limits: tuple[tuple[str, float, int], ...] = ()  # (scope, per second, burst)


@dataclass(slots=True)
class _Run:
    """One attempt a runner is executing: what the pool needs to stop it from outside."""

    task: Task
    runner: asyncio.Task[Any]
    started: float
    stop: str = ""  # why the pool cancelled the handler: cancel | timeout | shutdown
    cancels: int = 0  # cancel() calls on the runner, undone once the handler is left
    in_handler: bool = True
    abandoned: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class Outcome:
    """How one attempt ended, before it is written to Redis."""

    kind: str  # completed | retry | fail | cancel | release
    result: Any = None
    error: str = ""
    delay_s: float | None = None


def backoff_s(retry_count: int, base_s: float, max_s: float) -> float:
    """Exponential back-off with jitter in [d/2, d], d = min(max, base * 2**n)."""
    ceiling = min(max_s, base_s * float(2 ** min(retry_count, 32)))
    jitter: float = random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto
    return ceiling / 2 + jitter


def consumer_name(n: int = 0) -> str:
    """Stable, unique consumer name of this process: ``host:pid:n``."""
    return f"{socket.gethostname()}:{os.getpid()}:{n}"


class WorkerPool:
    """Runs tasks of the configured queues until asked to stop."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        consumer: str,
        config: PoolConfig,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.consumer = consumer
        self.config = config
        self.held: dict[str, Task] = {}
        self._fetched_at: dict[str, float] = {}
        #: Called with (task type, outcome status, run time in s) after each attempt.
        self.finished_hooks: list[Callable[[str, str, float], None]] = []
        self.fetcher = Fetcher(
            store,
            consumer,
            config.queues,
            rate_limits=config.rate_limits,
            block_ms=config.block_ms,
            single_node=not store.cluster,
        )
        # Prefetched tasks wait most-urgent first, so a priority-10 task fetched behind
        # prefetched low ones overtakes them (FIFO within a level by fetch order).
        self._ready: asyncio.PriorityQueue[tuple[int, int, Task | None]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._running: dict[str, _Run] = {}
        self._runners: set[asyncio.Task[None]] = set()
        self._base_context = contextvars.copy_context()  # (re)set by run()
        self._room = asyncio.Event()
        self._finishing = 0  # held tasks whose outcome is being written
        self._buffer_changed = asyncio.Event()
        self._buffered: Counter[int] = Counter()  # priority -> prefetched tasks waiting
        self._writing: set[asyncio.Future[Any]] = set()  # writes retried or written for others
        self._room.set()
        self._shutting_down = False
        self._closing = False
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop  # set by run(): the pool may be built off-loop
        self._debug = False
        self._completions: Coalescer[tuple[Task, bytes], str] = Coalescer(store.complete_many)
        self.started = asyncio.Event()
        self.completed = 0
        self.failed = 0

    @property
    def capacity(self) -> int:
        """How many tasks this pool may hold at once (running + prefetched)."""
        return self.config.concurrency + self.config.prefetch

    def running_handlers(self) -> list[tuple[str, str]]:
        """(task type, handler module) of every handler running now (for the loop-lag hint)."""
        found = []
        for run in self._running.values():
            handler = self.registry.get(run.task.task_type)
            module = getattr(handler.func, "__module__", "") if handler else ""
            found.append((run.task.task_type, module or ""))
        return found

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and run tasks until ``stop`` is set, then shut down gracefully."""
        self._executor = ThreadPoolExecutor(self.config.concurrency, "taskd-handler")
        self._loop = asyncio.get_running_loop()
        self._debug = enabled("debug")
        self._base_context = contextvars.copy_context()  # each handler runs in a copy
        try:
            async with asyncio.TaskGroup() as group:
                background = [
                    group.create_task(self._renew_loop()),
                    group.create_task(self._cancel_listener()),
                ]
                for _ in range(self.config.concurrency):
                    self._add_runner()
                fetcher = group.create_task(self._fetch_loop(stop))
                self.started.set()
                await fetcher
                await self._shutdown()
                self._closing = True  # loops also check this: redis-py may swallow a cancel
                for job in background:
                    job.cancel()
        finally:
            for job in self._runners:  # only left when run() itself was cancelled
                job.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)
            try:
                await self.store.unregister(self.consumer)
            except RedisUnavailable:
                log.warning("unregister_failed", consumer=self.consumer)

    def _add_runner(self) -> None:
        job = self._loop.create_task(self._runner())
        self._runners.add(job)
        job.add_done_callback(self._runner_ended)

    def _runner_ended(self, job: asyncio.Task[None]) -> None:
        self._runners.discard(job)
        if job.cancelled() or job.exception() is None:
            return
        log.error("runner_crashed", error=repr(job.exception()))
        if not self._shutting_down:
            self._add_runner()  # the pool keeps its size

    async def _shutdown(self) -> None:
        """Hand back what never started, give running tasks the grace period, then release."""
        self._shutting_down = True
        while not self._ready.empty():
            _, _, waiting = self._ready.get_nowait()
            if waiting is not None:
                self._buffered[waiting.priority] -= 1
                await self._finish(waiting, Outcome("release"), 0.0)
        for _ in self._runners:  # each runner ends at its next take from the buffer
            self._ready.put_nowait((LAST, next(self._order), None))
        if self._running:
            grace_s = self.config.shutdown_grace_s
            log.info("shutdown_waiting", running=len(self._running), grace_s=grace_s)
            await asyncio.wait(set(self._runners), timeout=grace_s)
            for run in list(self._running.values()):
                self._stop_run(run, "shutdown")
        # Runners whose handler ignores the cancel are abandoned after cancel_grace_s and
        # leave the set; the others end once their outcome is written.
        while live := [job for job in self._runners if not job.done()]:
            await asyncio.wait(live, timeout=self.config.cancel_grace_s)
        # Successes still being written (a retry after a failed write may add more).
        while self._writing or self._completions.pending:
            await self._completions.drained()
            await asyncio.gather(*list(self._writing), return_exceptions=True)
            await asyncio.sleep(0)

    async def _fetch_loop(self, stop: asyncio.Event) -> None:
        stop_wakes_fetcher = asyncio.ensure_future(self._set_room_on(stop))
        watcher = asyncio.ensure_future(self._watch_urgent(stop))
        try:
            await self._fetch_until(stop)
        finally:
            stop_wakes_fetcher.cancel()
            self._buffer_changed.set()
        # A blocking read still in flight when stop came may just have delivered tasks:
        # runners woken by them must hand them back, not start them (no new work after
        # SIGTERM). Set before this coroutine yields, so no runner sees the old value.
        self._shutting_down = True
        await watcher  # its blocking read ends within block_ms; what it got goes back

    async def _watch_urgent(self, stop: asyncio.Event) -> None:
        """While the pool is full, take in tasks more urgent than a prefetched one.

        The fetcher refills the buffer only when a slot frees, so without this a
        priority-10 task submitted to a saturated pool would wait behind a whole buffer of
        prefetched low-priority tasks; with it, it waits only for the next free runner.
        The buffer may grow by at most ``prefetch`` this way.
        """
        if self.config.prefetch <= 0:
            return
        while not stop.is_set():
            self._buffer_changed.clear()
            above = self._least_urgent_buffered()
            overflow = len(self.held) - self._finishing - self.capacity
            if above is None or above >= 10 or overflow < 0 or overflow >= self.config.prefetch:
                await self._buffer_changed.wait()
                continue
            try:
                tasks = await self.fetcher.fetch_urgent(above, self.held.values())
            except RedisUnavailable:
                await _first(asyncio.sleep(1.0), stop.wait())
                continue
            if tasks is None:  # every queue paused or capped: wait for the buffer to move
                await self._buffer_changed.wait()
                continue
            if stop.is_set():
                for task in tasks:
                    await self._finish(task, Outcome("release"), 0.0)
                return
            self._buffer(tasks)

    def _least_urgent_buffered(self) -> int | None:
        """The lowest priority among prefetched tasks not yet running (None if none)."""
        return min((p for p, n in self._buffered.items() if n > 0), default=None)

    def _buffer(self, tasks: list[Task]) -> None:
        now = time.monotonic()
        for task in tasks:
            self.held[task.id] = task
            self._fetched_at[task.id] = now
            self._ready.put_nowait((-task.priority, next(self._order), task))
            self._buffered[task.priority] += 1

    async def _set_room_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._room.set()

    async def _fetch_until(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            # A task whose handler has returned frees its slot for fetching at once: the
            # refill goes out while the outcome is written, so the next task (and a more
            # urgent one that arrived meanwhile) is in the buffer when the runner is free.
            room = self.capacity - len(self.held) + self._finishing
            if room <= 0:
                self._room.clear()
                self._buffer_changed.set()  # full: the urgent watcher looks at the buffer
                await self._room.wait()  # a finished task, or stop (see _set_room_on)
                continue
            try:
                tasks = await self.fetcher.fetch(room, self.held.values())
                failures = 0
            except RedisUnavailable as exc:
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                log.warning("fetch_failed", error=str(exc), retry_in_s=round(delay, 2))
                await _first(asyncio.sleep(delay), stop.wait())
                continue
            self._buffer(tasks)
            if tasks and not stop.is_set():  # (once stopped, no runner may start these)
                # Let the runners take their share of the batch before the room is measured
                # again: the next fetch then asks for what they freed meanwhile, not for a
                # sliver that would hold up the fetch behind it.
                await asyncio.sleep(0)

    async def _runner(self) -> None:
        me = asyncio.current_task()
        assert me is not None  # runners are asyncio tasks
        while True:
            _, _, task = await self._ready.get()
            if task is None:
                return
            self._buffered[task.priority] -= 1
            if not await self._execute(task, me):
                return  # abandoned in a handler; a new runner has taken this one's place

    async def _execute(self, task: Task, runner: asyncio.Task[None]) -> bool:
        """Run one task and see its outcome written or on its way; False when the handler
        was abandoned (it ignored cancellation), so this runner must end."""
        started = time.monotonic()
        # A task that waited in the buffer for half a lease may belong to another worker by
        # now (this process was frozen: SIGSTOP, a long GC): do not redo its work.
        waited = started - self._fetched_at.get(task.id, started)
        if waited > self.config.lease_s / 2 and not await self._still_held(task):
            return True
        handler = self.registry.get(task.task_type)
        outcome: Outcome | None
        gave_turn = True  # whether running this task let the event loop run others
        if handler is None:
            error = f"no handler registered for task type {task.task_type!r}"
            outcome = Outcome("fail", error=error)
        elif self._shutting_down:
            outcome = Outcome("release")
        else:
            outcome, gave_turn = await self._supervise(task, handler, runner, started)
            if outcome is None:
                return False
        self._finishing += 1
        self._room.set()
        duration_s = time.monotonic() - started
        if outcome.kind == "completed":
            try:
                result = orjson.dumps(outcome.result)
            except TypeError as exc:
                outcome = Outcome("fail", error=f"result is not JSON-serialisable: {exc}")
            else:
                # The runner moves on at once: a success is written in the background, with
                # others finishing now, so a runner never idles through a round trip.
                self._complete_soon(task, result, duration_s)
                if not gave_turn:
                    # The handler never waited: give the loop a turn before the next task,
                    # so a run of instant tasks cannot starve the fetcher, leases or the API.
                    await asyncio.sleep(0)
                return True
        await self._finish_counted(task, outcome, duration_s)
        return True

    def _complete_soon(self, task: Task, result: bytes, duration_s: float) -> None:
        done = functools.partial(self._on_completed, task, result, duration_s)
        self._completions.add((task, result), done)

    def _on_completed(
        self, task: Task, result: bytes, duration_s: float, written: str | BaseException
    ) -> None:
        if isinstance(written, RedisUnavailable | asyncio.CancelledError):
            # The slow path retries while Redis is away.
            outcome = Outcome("completed", orjson.loads(result))
            self._finish_in_background(task, outcome, duration_s)
            return
        self._finishing -= 1
        if isinstance(written, BaseException):
            log.error("completion_write_failed", error=str(written), task_id=task.id)
        elif written == "completed":
            self.completed += 1
            self._finished(task, "completed", duration_s, "")
        else:
            stale = written == "stale"
            reason = StaleAttempt(task.id, task.attempt) if stale else TaskNotFound(task.id)
            log.warning("stale_attempt_refused", reason=str(reason), task_id=task.id)
        self._free(task)

    def _finish_in_background(self, task: Task, outcome: Outcome, duration_s: float) -> None:
        """Write an outcome off the runner (a success whose write failed, an abandoned
        handler's); shutdown waits for it."""
        writer = asyncio.ensure_future(self._finish_counted(task, outcome, duration_s))
        self._writing.add(writer)
        writer.add_done_callback(self._writing.discard)

    async def _finish_counted(self, task: Task, outcome: Outcome, duration_s: float) -> None:
        """:meth:`_finish` for a task counted in ``_finishing`` since its handler returned."""
        try:
            await self._finish(task, outcome, duration_s)
        finally:
            self._finishing -= 1

    async def _still_held(self, task: Task) -> bool:
        try:
            held = await self.store.is_held(task)
        except RedisUnavailable:
            held = True  # cannot tell: run it; the attempt fence still guards the result
        if not held:
            log.warning("prefetched_task_lost", task_id=task.id, attempt=task.attempt)
            self.held.pop(task.id, None)
            self._fetched_at.pop(task.id, None)
            self._room.set()
        return held

    async def _supervise(
        self, task: Task, handler: TaskType, runner: asyncio.Task[None], started: float
    ) -> tuple[Outcome | None, bool]:
        """Run the handler in this runner under its timeout, in a context of its own (see
        taskd.engine.inline): its outcome (None when it ignored cancellation and was abandoned)
        and whether it ever waited."""
        ctx = Context(
            task,
            self._report_progress,
            interval_s=self.config.progress_interval_s,
            loop=self._loop,
            settings=self.settings,
            store=self.store,
        )
        run = _Run(task, runner, started)
        self._running[task.id] = run
        run.timer = self._loop.call_later(task.timeout_s, self._stop_run, run, "timeout")
        outcome = None
        driven = InContext(self._base_context.copy(), self._invoke(handler, ctx, task))
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
            if self._running.get(task.id) is run:
                del self._running[task.id]
        if run.abandoned:
            return None, True
        if run.stop == "timeout" or outcome is None:
            outcome = _stopped_outcome(run)
        return outcome, driven.suspended

    def _stop_run(self, run: _Run, why: str) -> None:
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
            run.timer = self._loop.call_later(self.config.cancel_grace_s, self._abandon, run)

    def _abandon(self, run: _Run) -> None:
        """The handler ignored its cancellation: write its outcome for it and put a new
        runner in its place, so the pool keeps its size."""
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
        if self._running.get(task.id) is run:
            del self._running[task.id]
        self._runners.discard(run.runner)
        self._finishing += 1
        self._room.set()
        self._finish_in_background(task, _stopped_outcome(run), time.monotonic() - run.started)
        if not self._shutting_down:
            self._add_runner()

    async def _invoke(self, handler: TaskType, ctx: Context, task: Task) -> Outcome:
        # This coroutine runs in its own copy of the context (InContext): the binding ends
        # with it.
        bind_task_fields(task.id, task.task_type, task.attempt)
        if self._debug:
            log.debug("task_started", worker=self.consumer)
        try:
            if handler.is_async:
                result = await handler.func(ctx, task.payload)
            else:
                call = contextvars.copy_context().run
                result = await self._loop.run_in_executor(
                    self._executor, call, handler.func, ctx, task.payload
                )
            return Outcome("completed", result=result)
        except asyncio.CancelledError:
            raise
        except Retry as exc:
            return Outcome("retry", error=str(exc), delay_s=exc.delay_s)
        except Fail as exc:
            return Outcome("fail", error=str(exc) or "failed")
        except BaseException as exc:
            base = ctx.settings.data_dir if ctx.settings is not None else None
            return Outcome("retry", error=describe(exc, base))

    async def _finish(self, task: Task, outcome: Outcome, duration_s: float) -> None:
        """Write the outcome, retrying while Redis is briefly away; free the slot."""
        try:
            for attempt in range(1, 1000):
                try:
                    status = await self._write(task, outcome)
                    break
                except RedisUnavailable:
                    if attempt * 0.5 > self.config.lease_s:
                        status = "abandoned"  # the lease expired; another worker takes it
                        break
                    await asyncio.sleep(0.5)
            self._finished(task, status, duration_s, outcome.error)
        except (StaleAttempt, TaskNotFound) as exc:
            log.warning("stale_attempt_refused", reason=str(exc), task_id=task.id)
        finally:
            self._free(task)

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

    def _free(self, task: Task) -> None:
        """The task's slot is free: forget it and let the fetcher refill."""
        self.held.pop(task.id, None)
        self._fetched_at.pop(task.id, None)
        self._room.set()

    async def _write(self, task: Task, outcome: Outcome) -> str:
        if outcome.kind == "completed":
            try:
                result = orjson.dumps(outcome.result)
            except TypeError as exc:
                error = f"result is not JSON-serialisable: {exc}"
                return await self.store.fail(task, error, "fail")
            written = await self._completions.submit((task, result))
            if written == "stale":
                raise StaleAttempt(task.id, task.attempt)
            if written == "missing":
                raise TaskNotFound(task.id)
            self.completed += 1
            return "completed"
        if outcome.kind == "release":
            return await self.store.release(task)
        delay = outcome.delay_s
        if delay is None:
            delay = backoff_s(
                task.retry_count, self.config.backoff_base_s, self.config.backoff_max_s
            )
        status = await self.store.fail(task, outcome.error, outcome.kind, int(delay * 1000))
        if status == "failed":
            self.failed += 1
        return status

    async def _report_progress(self, task: Task, percent: int, message: str) -> int:
        reply = await self.store.progress(task, percent, message)
        if reply == 2:
            self._request_cancel(task.id)
        return reply

    def _request_cancel(self, task_id: str) -> None:
        run = self._running.get(task_id)
        if run is not None and not run.stop:
            self._stop_run(run, "cancel")
            log.info("task_cancel_requested", task_id=task_id)

    async def _cancel_listener(self) -> None:
        while not self._closing:
            requests = self.store.cancel_requests()
            try:
                while not self._closing:
                    task_id = await requests.get()
                    if task_id is not None:
                        self._request_cancel(task_id)
            except RedisUnavailable:
                await asyncio.sleep(1.0)
            finally:
                await requests.close()

    async def _renew_loop(self) -> None:
        """Renew leases and the heartbeat every third of the lease."""
        interval = self.config.lease_s / 3
        info = {
            "consumer": self.consumer,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": self.config.concurrency,
            "queues": list(self.config.queues),
            # Read by other nodes' submit check (taskd.engine.known): which types run here.
            "task_types": [t.name for t in self.registry],
            "started_at": time.time(),
        }
        while not self._closing:
            try:
                await self.store.renew(self.consumer, list(self.held.values()))
                await self.store.heartbeat(
                    self.consumer,
                    info
                    | {
                        "held": len(self.held),
                        "finishing": self._finishing,  # of those, done and being written
                        "completed": self.completed,
                        "failed": self.failed,
                        "heartbeat_at": time.time(),
                    },
                    ttl_s=self.config.lease_s,
                )
            except RedisUnavailable as exc:
                log.warning("lease_renewal_failed", error=str(exc))
            await asyncio.sleep(interval)


async def _first(*aws: Any) -> None:
    """Wait until the first of several awaitables finishes; cancel the rest."""
    jobs = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for job in jobs:
            job.cancel()


def _stopped_outcome(run: _Run) -> Outcome:
    """The outcome of a handler the pool cancelled (or abandoned) for ``run.stop``."""
    if run.stop == "timeout":
        return Outcome("retry", error=f"timed out after {run.task.timeout_s:g}s")
    if run.stop == "cancel":
        return Outcome("cancel", error="cancelled on request")
    return Outcome("release")
