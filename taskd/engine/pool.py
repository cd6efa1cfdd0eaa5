"""The worker pool: one fetcher feeding N runner coroutines through a prefetch buffer.

The fetcher reserves at most ``concurrency + prefetch`` tasks at a time, so a task of
priority 10 submitted behind a long backlog never waits for the backlog; while the pool
is full, a watcher takes such a task in ahead of the reserved ones, so it waits only for
the next free runner. A reserved task is held but not started: a runner starts it
(reserved -> processing, one atomic call that also checks it is still this worker's) the
moment it takes it from the buffer, so ``processing`` counts only running handlers and a
cancel of a buffered task is immediate. One attempt's supervision lives in
taskd.engine.attempt, writing outcomes in taskd.engine.outcome, leases, heartbeat and
cancel requests in taskd.engine.lease.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from taskd.config import Settings
from taskd.engine.attempt import Attempts, AttemptSettings, Run, elapsed
from taskd.engine.buffer import PrefetchBuffer
from taskd.engine.fetcher import Fetcher
from taskd.engine.lease import Lease
from taskd.engine.outcome import Kind, Outcome, OutcomeWriter
from taskd.engine.registry import Registry
from taskd.errors import RedisUnavailable
from taskd.log import enabled
from taskd.model import Status, Task
from taskd.store import Store

log = structlog.get_logger(__name__)


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
        self.held: dict[str, Task] = {}  # reserved, running or finishing, by task id
        self.fetcher = Fetcher(
            store,
            consumer,
            config.queues,
            rate_limits=config.rate_limits,
            block_ms=config.block_ms,
            single_node=not store.cluster,
            task_types=[t.name for t in registry],
        )
        self.buffer = PrefetchBuffer()
        self._runners: set[asyncio.Task[None]] = set()
        self._taken: set[str] = set()  # ids a runner took from the buffer, not yet running
        self._early_cancels: set[str] = set()  # cancel requests for those
        self._room = asyncio.Event()
        self._room.set()
        self._buffer_changed = asyncio.Event()
        self._shutting_down = False
        self._loop: asyncio.AbstractEventLoop  # set by run(): the pool may be built off-loop
        self.writer = OutcomeWriter(
            store,
            consumer,
            lease_s=config.lease_s,
            backoff=(config.backoff_base_s, config.backoff_max_s),
            on_free=self._free,
        )
        self.attempts = Attempts(
            AttemptSettings(consumer, config.progress_interval_s, config.cancel_grace_s, settings),
            store,
            self._report_progress,
            self._abandoned,
        )
        self.lease = Lease(
            store,
            consumer,
            config.lease_s,
            held=lambda: list(self.held.values()),
            on_cancel=self._request_cancel,
            on_lost=self._lost,
            info=self._heartbeat_info,
            queues=self.fetcher.queue_names(),
        )
        self.started = asyncio.Event()

    @property
    def capacity(self) -> int:
        """How many tasks this pool may hold at once (running + reserved)."""
        return self.config.concurrency + self.config.prefetch

    @property
    def completed(self) -> int:
        """Successes this pool wrote."""
        return self.writer.completed

    @property
    def failed(self) -> int:
        """Tasks this pool failed for good."""
        return self.writer.failed

    @property
    def finished_hooks(self) -> list[Callable[[str, str, float], None]]:
        """Called with (task type, outcome status, run time in s) after each attempt."""
        return self.writer.finished_hooks

    def running_handlers(self) -> list[tuple[str, str]]:
        """(task type, handler module) of every handler running now (for the loop-lag hint)."""
        found = []
        for run in self.attempts.running.values():
            handler = self.registry.get(run.task.task_type)
            module = getattr(handler.func, "__module__", "") if handler else ""
            found.append((run.task.task_type, module or ""))
        return found

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and run tasks until ``stop`` is set, then shut down gracefully."""
        executor = ThreadPoolExecutor(self.config.concurrency, "taskd-handler")
        self.attempts.executor = executor
        self._loop = asyncio.get_running_loop()
        self.attempts.config = AttemptSettings(
            self.consumer,
            self.config.progress_interval_s,
            self.config.cancel_grace_s,
            self.settings,
            enabled("debug"),
        )
        self.attempts.base_context = contextvars.copy_context()  # each handler runs in a copy
        try:
            async with asyncio.TaskGroup() as group:
                background = [
                    group.create_task(self.lease.renew_loop()),
                    group.create_task(self.lease.cancel_listener()),
                ]
                for _ in range(self.config.concurrency):
                    self._add_runner()
                fetcher = group.create_task(self._fetch_loop(stop))
                try:
                    # Started means visible: a submit from another node right after this
                    # may name a type only this worker runs.
                    await self.lease.announced.wait()
                    self.started.set()
                    await fetcher
                    await self._shutdown()
                finally:
                    # Also when run() itself is cancelled: the task group cancels these
                    # loops once, and redis-py may swallow a cancel that lands in a call,
                    # so they check the flag too and are cancelled once more here.
                    self.lease.closing = True
                    for job in background:
                        job.cancel()
        finally:
            for job in self._runners:  # only left when run() itself was cancelled
                job.cancel()
            executor.shutdown(wait=False, cancel_futures=True)
            try:
                await self.store.unregister(self.consumer)
            except RedisUnavailable:
                log.warning("unregister_failed", consumer=self.consumer)

    def _heartbeat_info(self) -> dict[str, Any]:
        running = len(self.attempts.running)
        finishing = self.writer.finishing
        return {
            "concurrency": self.config.concurrency,
            "queues": list(self.config.queues),
            # What this worker runs: read by other nodes' submit check (taskd.engine.known);
            # a handed-back task no live worker of its queue runs fails (the supervisor).
            "task_types": sorted(t.name for t in self.registry),
            "held": len(self.held),
            "running": running,
            "reserved": max(0, len(self.held) - running - finishing),
            "finishing": finishing,  # of those held, done and being written
            "completed": self.writer.completed,
            "failed": self.writer.failed,
        }

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
        for waiting in self.buffer.take_all():
            if self.held.get(waiting.id) is waiting:
                await self.writer.finish(waiting, Outcome(Kind.RELEASE), 0.0)
        self.buffer.stop_runners(len(self._runners))
        if self.attempts.running:
            grace_s = self.config.shutdown_grace_s
            log.info("shutdown_waiting", running=len(self.attempts.running), grace_s=grace_s)
            await asyncio.wait(set(self._runners), timeout=grace_s)
            self.attempts.stop_all()
        # Runners whose handler ignores the cancel are abandoned after cancel_grace_s and
        # leave the set; the others end once their outcome is written.
        while live := [job for job in self._runners if not job.done()]:
            await asyncio.wait(live, timeout=self.config.cancel_grace_s)
        await self.writer.drain()

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
        """While the pool is full, take in tasks more urgent than a reserved one.

        The fetcher refills the buffer only when a slot frees, so without this a
        priority-10 task submitted to a saturated pool would wait behind a whole buffer of
        reserved low-priority tasks; with it, it waits only for the next free runner.
        The buffer may grow by at most ``prefetch`` this way.
        """
        if self.config.prefetch <= 0:
            return
        while not stop.is_set():
            self._buffer_changed.clear()
            above = self.buffer.least_urgent()
            overflow = len(self.held) - self.writer.finishing - self.capacity
            if above is None or above >= 10 or overflow < 0 or overflow >= self.config.prefetch:
                await self._buffer_changed.wait()
                continue
            room = self.config.prefetch - overflow
            try:
                tasks = await self.fetcher.fetch_urgent(above, self.held.values(), room)
            except RedisUnavailable:
                await _first(asyncio.sleep(1.0), stop.wait())
                continue
            if tasks is None:  # every queue paused or capped: wait for the buffer to move
                await self._buffer_changed.wait()
                continue
            self._buffer(tasks)
            if stop.is_set():
                return  # the shutdown hands the buffer back

    def _buffer(self, tasks: list[Task]) -> None:
        for task in tasks:
            self.held[task.id] = task
        self.buffer.put(tasks)

    async def _set_room_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._room.set()

    async def _fetch_until(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            # A task whose handler has returned frees its slot for fetching at once: the
            # refill goes out while the outcome is written, so the next task (and a more
            # urgent one that arrived meanwhile) is in the buffer when the runner is free.
            room = self.capacity - len(self.held) + self.writer.finishing
            if room <= 0:
                self._room.clear()
                self._buffer_changed.set()  # full: the urgent watcher looks at the buffer
                await self._room.wait()  # a finished task, or stop (see _set_room_on)
                continue
            try:
                tasks = await self.fetcher.fetch(room, self.held.values(), self.buffer.idle_runners)
                failures = 0
            except RedisUnavailable as exc:
                # The call may have been applied: what it reserved in this consumer's
                # name is handed back by the next lease renewal (renew.lua's orphans).
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                log.warning("fetch_failed", error=str(exc), retry_in_s=round(delay, 2))
                await _first(asyncio.sleep(delay), stop.wait())
                continue
            self._buffer(tasks)
            if tasks and not stop.is_set():  # (once stopped, the shutdown hands them back)
                # Let the runners take their share of the batch before the room is measured
                # again: the next fetch then asks for what they freed meanwhile, not for a
                # sliver that would hold up the fetch behind it.
                await asyncio.sleep(0)

    async def _runner(self) -> None:
        me = asyncio.current_task()
        assert me is not None  # runners are asyncio tasks
        while True:
            task = await self.buffer.take()
            if task is None:
                return
            if self.held.get(task.id) is not task:
                continue  # dropped while reserved: cancelled, or no longer this worker's
            self._taken.add(task.id)
            try:
                if not await self._execute(task, me):
                    return  # abandoned in a handler; a new runner has taken this one's place
            finally:
                self._taken.discard(task.id)
                self._early_cancels.discard(task.id)

    async def _execute(self, task: Task, runner: asyncio.Task[None]) -> bool:
        """Start one reserved task, run it, and see its outcome written or on its way;
        False when the handler was abandoned (it ignored cancellation), so this runner
        must end."""
        if not await self._begin(task):
            return True
        started = time.monotonic()
        handler = self.registry.get(task.task_type)
        gave_turn = True  # whether running this task let the event loop run others
        outcome: Outcome | None
        if task.id in self._early_cancels:
            outcome = Outcome(Kind.CANCEL, error="cancelled on request")
        elif self._shutting_down:
            outcome = Outcome(Kind.RELEASE)
        elif handler is None:
            error = f"no handler registered for task type {task.task_type!r}"
            outcome = Outcome(Kind.FAIL, error=error)
        else:
            outcome, gave_turn = await self.attempts.supervise(task, handler, runner, started)
        if outcome is None:
            return False
        duration_s = time.monotonic() - started
        if outcome.kind == Kind.COMPLETED:
            try:
                result = orjson.dumps(outcome.result)
            except TypeError as exc:
                outcome = Outcome(Kind.FAIL, error=f"result is not JSON-serialisable: {exc}")
            else:
                # The runner moves on at once: a success is written in the background, with
                # others finishing now and the next starts, so a runner never idles
                # through a round trip of its own.
                self.writer.complete_soon(task, result, duration_s)
                self._room.set()
                if not gave_turn:
                    # The handler never waited: give the loop a turn before the next task,
                    # so a run of instant tasks cannot starve the fetcher, leases or the API.
                    await asyncio.sleep(0)
                return True
        finishing = asyncio.ensure_future(self.writer.finish(task, outcome, duration_s))
        self._room.set()  # counted as finishing: the fetcher may refill its slot
        await finishing
        return True

    async def _begin(self, task: Task) -> bool:
        """Start a reserved task (reserved -> processing); False when it must not run:
        shutdown hands it back, and one cancelled or reclaimed meanwhile is dropped. A
        task the fetch started for an idle runner is running already."""
        if self._shutting_down:
            await self.writer.finish(task, Outcome(Kind.RELEASE), 0.0)
            return False
        if task.status == Status.PROCESSING:
            return True
        if await self.writer.begin(task) is None:
            self._free(task)
            return False
        task.status = Status.PROCESSING
        return True

    def _abandoned(self, run: Run, outcome: Outcome) -> None:
        """A handler ignored its cancellation: write its outcome for it and put a new
        runner in its place, so the pool keeps its size."""
        self._runners.discard(run.runner)
        self.writer.finish_in_background(run.task, outcome, elapsed(run))
        self._room.set()
        if not self._shutting_down:
            self._add_runner()

    def _free(self, task: Task) -> None:
        """The task's slot is free: forget it and let the fetcher refill."""
        if self.held.get(task.id) is task:
            del self.held[task.id]
        self._room.set()

    async def _report_progress(self, task: Task, percent: int, message: str) -> str:
        reply = await self.store.progress(task, percent, message)
        if reply == "cancel":
            self._request_cancel(task.id)
        return reply

    def _request_cancel(self, task_id: str) -> None:
        """A cancel request (published, or seen at renewal): stop the running handler, or
        drop a reserved task still in the buffer (cancel.lua has already cancelled it)."""
        if self.attempts.request_cancel(task_id):
            return
        task = self.held.get(task_id)
        queued = task_id in self.buffer
        if task_id in self._taken or (
            queued and task is not None and task.status == Status.PROCESSING
        ):
            # Being started, or started by the fetch and still in the buffer: its runner
            # writes the cancel instead of running it.
            self._early_cancels.add(task_id)
            return
        if queued and task is not None and task.status == Status.RESERVED:
            self._free(task)

    def _lost(self, task_id: str) -> None:
        """The renewal found a held task no longer this worker's: a reserved one leaves
        the buffer; a running one finishes and its late outcome is refused (fencing)."""
        task = self.held.get(task_id)
        if task is not None and task_id in self.buffer:
            log.warning("reserved_task_lost", task_id=task_id, attempt=task.attempt)
            self._free(task)


async def _first(*aws: Any) -> None:
    """Wait until the first of several awaitables finishes; cancel the rest."""
    jobs = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for job in jobs:
            job.cancel()
