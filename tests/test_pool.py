"""The worker pool and supervisor running real tasks on real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from contextvars import ContextVar
from typing import Any

import structlog

from taskd.engine.context import Context
from taskd.engine.supervisor import Supervisor, SupervisorConfig
from taskd.errors import Fail, Retry, WrongState
from taskd.handlers.progress import ThreadProgress, run_in_thread
from taskd.model import FINISHED, Status, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.enginetools import take
from tests.pooltools import registry_of, running_pool

TENANT: ContextVar[str] = ContextVar("tenant", default="none")


async def wait_finished(store: Store, task_id: str, timeout_s: float = 10.0) -> Any:
    """Poll until the task is finished and return it."""

    async def finished() -> Any:
        task = await store.get(task_id)
        return task if task.status in FINISHED else None

    return await eventually(finished, timeout_s)


async def test_task_completes_with_result_and_full_progress(store: Store, queue: str) -> None:
    """A handler's return value is stored and a completed task shows progress 100."""

    async def double(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        await ctx.progress(40, "half way")
        return {"value": payload["n"] * 2}

    async with running_pool(store, registry_of(double=double), queue):
        ((task, _),) = await store.submit([make_spec("double", {"n": 21}, queue=queue)])
        done = await wait_finished(store, task.id)
    assert done.status == Status.COMPLETED
    assert done.result == {"value": 42}
    assert done.progress == 100
    assert done.worker
    assert done.started_at
    assert done.completed_at


async def test_sync_handler_runs_in_a_thread(store: Store, queue: str) -> None:
    """A plain function handler runs off the loop and its result is stored."""
    loop_thread = threading.get_ident()

    def blocking(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.05)  # a real blocking call, which must not stall the loop
        return {"same_thread": threading.get_ident() == loop_thread}

    async with running_pool(store, registry_of(blocking=blocking), queue):
        ((task, _),) = await store.submit([make_spec("blocking", queue=queue)])
        done = await wait_finished(store, task.id)
    assert done.result == {"same_thread": False}


async def test_priority_order_under_a_busy_pool(store: Store, queue: str) -> None:
    """20 urgent tasks submitted behind 200 low ones all start within the prefetch window."""
    starts: list[int] = []

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        starts.append(payload["p"])
        await asyncio.sleep(0.005)

    concurrency, prefetch = 4, 4
    async with running_pool(
        store, registry_of(work=work), queue, concurrency=concurrency, prefetch=prefetch
    ):
        await store.submit(
            [make_spec("work", {"p": 1}, priority=1, queue=queue) for _ in range(200)]
        )
        await eventually(lambda: asyncio.sleep(0, result=len(starts) >= 10))
        started_before = len(starts)
        await store.submit(
            [make_spec("work", {"p": 10}, priority=10, queue=queue) for _ in range(20)]
        )
        await eventually(lambda: asyncio.sleep(0, result=len(starts) == 220), timeout_s=30)
    last_urgent = max(i for i, p in enumerate(starts) if p == 10)
    lows_overtaking = sum(1 for p in starts[started_before:last_urgent] if p == 1)
    assert lows_overtaking <= concurrency + prefetch, starts
    assert starts.count(1) == 200


async def test_urgent_task_overtakes_a_full_prefetch_buffer(store: Store, queue: str) -> None:
    """A priority-10 task submitted while every runner is busy and the prefetch buffer is
    full of low ones is taken in ahead of them: it runs on the next free runner."""
    starts: list[str] = []
    gate = asyncio.Event()

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        starts.append(payload["name"])
        if payload["name"] == "low-0":
            await gate.wait()

    async with running_pool(
        store, registry_of(work=work), queue, concurrency=1, prefetch=2
    ) as pool:
        lows = [make_spec("work", {"name": f"low-{i}"}, priority=1, queue=queue) for i in range(4)]
        await store.submit(lows)
        # low-0 runs (and blocks), low-1 and low-2 fill the buffer; low-3 stays in Redis.
        await eventually(
            lambda: asyncio.sleep(0, result=len(pool.held) == 3 and starts == ["low-0"])
        )
        ((urgent, _),) = await store.submit(
            [make_spec("work", {"name": "urgent"}, priority=10, queue=queue)]
        )
        await eventually(lambda: asyncio.sleep(0, result=urgent.id in pool.held))
        gate.set()
        await eventually(lambda: asyncio.sleep(0, result=len(starts) == 5))
    assert starts == ["low-0", "urgent", "low-1", "low-2", "low-3"]


async def test_fifo_within_a_priority_level(store: Store, queue: str) -> None:
    """With one worker, tasks of one level start in submission order."""
    order: list[int] = []

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        order.append(payload["i"])

    async with running_pool(store, registry_of(work=work), queue, concurrency=1, prefetch=0):
        await store.submit([make_spec("work", {"i": i}, queue=queue) for i in range(30)])
        await eventually(lambda: asyncio.sleep(0, result=len(order) == 30))
    assert order == list(range(30))


async def test_retry_then_success_honours_backoff(store: Store, queue: str) -> None:
    """A failing attempt is retried after its back-off and then succeeds."""
    attempts: list[float] = []

    async def flaky(ctx: Context, payload: dict[str, Any]) -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise RuntimeError(f"transient {len(attempts)}")
        return "ok"

    async with running_pool(
        store, registry_of(flaky=flaky), queue, backoff_base_s=0.2, backoff_max_s=5.0
    ):
        ((task, _),) = await store.submit([make_spec("flaky", queue=queue, max_retries=3)])
        done = await wait_finished(store, task.id)
    assert done.status == Status.COMPLETED
    assert done.retry_count == 2
    # back-off n is jittered within [d/2, d] with d = 0.2 * 2**n
    assert attempts[1] - attempts[0] >= 0.1
    assert attempts[2] - attempts[1] >= 0.2


async def test_retry_exhaustion_fails_with_last_error(store: Store, queue: str) -> None:
    """After max_retries failed retries the task is failed with the last error."""
    calls = 0

    async def broken(ctx: Context, payload: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"bad input #{calls}")

    async with running_pool(store, registry_of(broken=broken), queue):
        ((task, _),) = await store.submit([make_spec("broken", queue=queue, max_retries=2)])
        done = await wait_finished(store, task.id)
    assert done.status == Status.FAILED
    assert calls == 3
    assert done.error == "ValueError: bad input #3"
    assert await store.redis.zscore(store.keys(queue).dead, task.id) is not None


async def test_timeout_retries_then_fails(store: Store, queue: str) -> None:
    """A handler exceeding timeout_s is cancelled, retried, and finally failed."""
    calls = 0

    async def slow(ctx: Context, payload: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(30)

    async with running_pool(store, registry_of(slow=slow), queue):
        ((task, _),) = await store.submit(
            [make_spec("slow", queue=queue, timeout_s=0.1, max_retries=1)]
        )
        done = await wait_finished(store, task.id)
    assert done.status == Status.FAILED
    assert calls == 2
    assert done.error is not None
    assert "timed out" in done.error


async def test_fail_and_explicit_retry(store: Store, queue: str) -> None:
    """taskd.Fail fails without retrying; taskd.Retry(delay_s) retries after the delay."""
    seen: list[tuple[str, float]] = []

    async def decide(ctx: Context, payload: dict[str, Any]) -> str:
        seen.append((payload["mode"], time.monotonic()))
        if payload["mode"] == "fail":
            raise Fail("permanent problem")
        if sum(1 for m, _ in seen if m == "retry") == 1:
            raise Retry("not yet", delay_s=0.3)
        return "done"

    async with running_pool(store, registry_of(decide=decide), queue):
        (failing, _), (retrying, _) = await store.submit(
            [
                make_spec("decide", {"mode": "fail"}, queue=queue, max_retries=5),
                make_spec("decide", {"mode": "retry"}, queue=queue, max_retries=5),
            ]
        )
        failed = await wait_finished(store, failing.id)
        retried = await wait_finished(store, retrying.id)
    assert failed.status == Status.FAILED
    assert failed.error == "permanent problem"
    assert failed.retry_count == 0
    assert retried.status == Status.COMPLETED
    assert retried.retry_count == 1
    retry_times = [t for m, t in seen if m == "retry"]
    assert retry_times[1] - retry_times[0] >= 0.3


async def test_success_after_a_retry_clears_the_error(store: Store, queue: str) -> None:
    """A task that raised Retry("busy") and then succeeded is completed without an error;
    "busy" stays on that attempt's entry of its timeline, and the completed event clears
    the error for readers that merge events."""
    attempts: list[int] = []

    async def flaky(ctx: Context, payload: dict[str, Any]) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise Retry("busy", delay_s=0)
        return "done"

    async with running_pool(store, registry_of(flaky=flaky), queue):
        ((task, _),) = await store.submit([make_spec("flaky", queue=queue, max_retries=3)])
        done = await wait_finished(store, task.id)
    assert done.status == Status.COMPLETED
    assert done.error is None
    events, _ = await store.task_events(done)
    assert [e.task.get("error") for e in events if e.kind == "retrying"] == ["busy"]
    completed = [e.task for e in events if e.kind == "completed"]
    assert [t.get("error") for t in completed] == [""]


async def test_unknown_task_type_fails_clearly(store: Store, queue: str) -> None:
    """A task whose type has no handler fails at once with a clear error."""
    async with running_pool(store, registry_of(), queue):
        ((task, _),) = await store.submit([make_spec("nobody_handles_this", queue=queue)])
        done = await wait_finished(store, task.id)
    assert done.status == Status.FAILED
    assert done.error == "no handler registered for task type 'nobody_handles_this'"


async def test_delayed_start_not_before_run_at(store: Store, queue: str) -> None:
    """A delayed task starts no earlier than its run_at (Redis clock)."""

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        return None

    async with running_pool(store, registry_of(work=work), queue):
        ((task, _),) = await store.submit([make_spec("work", queue=queue, delay_s=0.5)])
        assert task.status == Status.SCHEDULED
        done = await wait_finished(store, task.id)
    assert task.run_at is not None
    assert done.started_at is not None
    assert done.started_at >= task.run_at


async def test_cancel_processing_cancels_the_handler(store: Store, queue: str) -> None:
    """Cancelling a running task cancels its coroutine and marks it cancelled."""
    entered = asyncio.Event()
    was_cancelled = asyncio.Event()

    async def long(ctx: Context, payload: dict[str, Any]) -> None:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            was_cancelled.set()
            raise

    async with running_pool(store, registry_of(long=long), queue):
        ((task, _),) = await store.submit([make_spec("long", queue=queue)])
        await asyncio.wait_for(entered.wait(), 10)
        assert await store.cancel(task.id) == "cancelling"
        done = await wait_finished(store, task.id)
    assert was_cancelled.is_set()
    assert done.status == Status.CANCELLED


async def test_a_cancelled_thread_has_stopped_before_the_task_is_cancelled(
    store: Store, queue: str
) -> None:
    """Work a built-in runs in a thread (run_in_thread) stops at its next progress update
    when the task is cancelled, and the task is recorded cancelled only once it has: a
    retry right after the cancel never runs beside the old attempt's thread."""
    entered = threading.Event()
    exited = threading.Event()

    def crunch(progress: ThreadProgress) -> None:
        entered.set()
        try:
            while True:
                time.sleep(0.02)  # a chunk of work that does not look at the flag
                progress.update(0.5, "crunching")
        finally:
            time.sleep(0.2)  # cleaning up takes a while
            exited.set()

    async def heavy(ctx: Context, payload: dict[str, Any]) -> None:
        await run_in_thread(ctx, crunch)

    async with running_pool(store, registry_of(heavy=heavy), queue):
        ((task, _),) = await store.submit([make_spec("heavy", queue=queue)])
        await asyncio.to_thread(entered.wait, 10)
        await store.cancel(task.id)
        done = await wait_finished(store, task.id)
        assert done.status == Status.CANCELLED
        assert exited.is_set()


async def test_context_variables_do_not_leak_between_tasks(store: Store, queue: str) -> None:
    """Handlers run inside their runner, but each in a context of its own: what one binds
    (a context variable, a structlog field), the next task on the same runner never sees."""
    seen: list[tuple[str, dict[str, Any]]] = []

    async def binder(ctx: Context, payload: dict[str, Any]) -> None:
        seen.append((TENANT.get(), structlog.contextvars.get_contextvars()))
        TENANT.set(payload["tenant"])
        structlog.contextvars.bind_contextvars(tenant=payload["tenant"])

    async with running_pool(store, registry_of(binder=binder), queue, concurrency=1):
        done = [
            t.id
            for t, _ in await store.submit(
                [make_spec("binder", {"tenant": f"t{i}"}, queue=queue) for i in range(3)]
            )
        ]
        for task_id in done:
            await wait_finished(store, task_id)
    assert [tenant for tenant, _ in seen] == ["none", "none", "none"]
    assert all("tenant" not in bound for _, bound in seen)


async def test_a_handlers_own_timeout_leaves_later_cancels_working(
    store: Store, queue: str
) -> None:
    """asyncio.timeout inside a handler cancels and uncancels the runner it runs in; after
    it, a cancel request for the next task on that runner still stops that task."""
    entered = asyncio.Event()

    async def impatient(ctx: Context, payload: dict[str, Any]) -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(30)
        except TimeoutError:
            return "gave up"
        return "slept"

    async def long(ctx: Context, payload: dict[str, Any]) -> None:
        entered.set()
        await asyncio.sleep(30)

    registry = registry_of(impatient=impatient, long=long)
    async with running_pool(store, registry, queue, concurrency=1):
        ((first, _),) = await store.submit([make_spec("impatient", queue=queue)])
        assert (await wait_finished(store, first.id)).result == "gave up"
        ((second, _),) = await store.submit([make_spec("long", queue=queue)])
        await asyncio.wait_for(entered.wait(), 10)
        assert await store.cancel(second.id) == "cancelling"
        assert (await wait_finished(store, second.id)).status == Status.CANCELLED


async def test_cancel_pending_task_never_runs(store: Store, queue: str) -> None:
    """A task cancelled while waiting behind a busy worker never starts."""
    gate = asyncio.Event()
    ran: list[str] = []

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        ran.append(payload["name"])
        await gate.wait()

    async with running_pool(store, registry_of(work=work), queue, concurrency=1, prefetch=0):
        (first, _), (second, _) = await store.submit(
            [
                make_spec("work", {"name": "first"}, queue=queue),
                make_spec("work", {"name": "second"}, queue=queue),
            ]
        )
        await eventually(lambda: asyncio.sleep(0, result=ran == ["first"]))
        assert await store.cancel(second.id) == "cancelled"
        gate.set()
        await wait_finished(store, first.id)
    assert ran == ["first"]
    assert (await store.get(second.id)).status == Status.CANCELLED


async def test_handler_raising_base_exception_keeps_pool_alive(store: Store, queue: str) -> None:
    """KeyboardInterrupt/SystemExit from a handler fail the attempt, not the process."""

    async def evil(ctx: Context, payload: dict[str, Any]) -> None:
        if payload["kind"] == "exit":
            raise SystemExit(3)
        raise KeyboardInterrupt

    async def fine(ctx: Context, payload: dict[str, Any]) -> str:
        return "fine"

    async with running_pool(store, registry_of(evil=evil, fine=fine), queue):
        ids = [
            t.id
            for t, _ in await store.submit(
                [
                    make_spec("evil", {"kind": "exit"}, queue=queue, max_retries=0),
                    make_spec("evil", {"kind": "kbd"}, queue=queue, max_retries=0),
                    make_spec("fine", queue=queue),
                ]
            )
        ]
        results = [await wait_finished(store, i) for i in ids]
    assert [r.status for r in results] == [Status.FAILED, Status.FAILED, Status.COMPLETED]


async def test_stats_match_real_states_after_2000_random_tasks(store: Store, queue: str) -> None:
    """Counters per status equal the real count of tasks in each status."""
    rng = random.Random(7)

    async def chaos(ctx: Context, payload: dict[str, Any]) -> str:
        roll = payload["roll"]
        if roll < 0.2:
            raise Fail("no")
        if roll < 0.4 and ctx.attempt == 1:
            raise RuntimeError("transient")
        if roll < 0.5:
            raise RuntimeError("always")
        return "ok"

    specs = [
        make_spec("chaos", {"roll": rng.random()}, queue=queue, max_retries=1) for _ in range(2000)
    ]
    async with running_pool(
        store,
        registry_of(chaos=chaos),
        queue,
        concurrency=50,
        backoff_base_s=0.001,
        backoff_max_s=0.002,
    ):
        submitted = [t for t, _ in await store.submit(specs)]
        for task in submitted[::50]:
            with contextlib.suppress(WrongState):  # finished or running already: fine
                await store.cancel(task.id)

        async def all_finished() -> bool:
            s = await store.stats(queue)
            return s["completed"] + s["failed"] + s["cancelled"] == 2000

        await eventually(all_finished, timeout_s=60)
    stats = await store.stats(queue)
    real: dict[str, int] = {}
    for task in await store.get_many([(queue, t.id) for t in submitted]):
        assert task is not None
        real[task.status] = real.get(task.status, 0) + 1
    for status in Status:
        assert stats[status] == real.get(status, 0), (status, stats, real)
    assert stats["total"] == 2000 == sum(real.values())


async def test_lease_renewal_keeps_a_long_task_with_its_worker(store: Store, queue: str) -> None:
    """A task running several lease periods is renewed, never reclaimed or run twice."""
    runs = 0

    async def long(ctx: Context, payload: dict[str, Any]) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(2.0)
        return "done"

    async with running_pool(store, registry_of(long=long), queue, lease_s=0.6):
        ((task, _),) = await store.submit([make_spec("long", queue=queue)])
        done = await wait_finished(store, task.id)
    assert runs == 1
    assert done.status == Status.COMPLETED
    assert (done.attempt, done.retry_count) == (1, 0)


async def test_shutdown_hands_unfinished_tasks_back(store: Store, queue: str) -> None:
    """Stopping a pool past its grace period releases running tasks to pending, no attempt used."""
    entered = asyncio.Event()

    async def stuck(ctx: Context, payload: dict[str, Any]) -> None:
        entered.set()
        await asyncio.sleep(60)

    async with running_pool(store, registry_of(stuck=stuck), queue, shutdown_grace_s=0.2):
        ((task, _),) = await store.submit([make_spec("stuck", queue=queue)])
        await asyncio.wait_for(entered.wait(), 10)
    released = await store.get(task.id)
    assert released.status == Status.PENDING
    assert released.retry_count == 0
    assert released.worker is None
    stats = await store.stats(queue)
    assert (stats["pending"], stats["processing"]) == (1, 0)


async def test_a_cancel_in_progress_at_shutdown_still_ends_cancelled(
    store: Store, queue: str
) -> None:
    """A handler still cleaning up after a cancel request when the pool stops past its grace
    period ends as cancelled (what was asked), not handed back to run again: the pool
    releases it, and the release sees the request."""
    entered = asyncio.Event()
    cleaning = asyncio.Event()

    async def slow_to_stop(ctx: Context, payload: dict[str, Any]) -> None:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cleaning.set()
            await asyncio.sleep(5)  # interrupted by the shutdown's own cancel
            raise

    registry = registry_of(slow_to_stop=slow_to_stop)
    async with running_pool(store, registry, queue, shutdown_grace_s=0.1):
        ((task, _),) = await store.submit([make_spec("slow_to_stop", queue=queue)])
        await asyncio.wait_for(entered.wait(), 10)
        assert await store.cancel(task.id) == "cancelling"
        await asyncio.wait_for(cleaning.wait(), 10)
    assert (await store.get(task.id)).status == Status.CANCELLED


async def test_events_one_per_transition_and_progress(store: Store, queue: str) -> None:
    """The events stream records created, started, progress and completed, in order: a
    task fetched for an idle runner starts in the fetch itself (no reserved step)."""

    async def step(ctx: Context, payload: dict[str, Any]) -> None:
        await ctx.progress(30, "a")
        await ctx.progress(60, "b")

    async with running_pool(store, registry_of(step=step), queue, progress_interval_s=0):
        ((task, _),) = await store.submit([make_spec("step", queue=queue)])
        await wait_finished(store, task.id)
    events = await store.read_events({queue: "0-0"})
    kinds = [(e.kind, e.task["progress"]) for e in events if e.task["id"] == task.id]
    assert kinds == [
        ("created", "0"),
        ("started", "0"),
        ("progress", "30"),
        ("progress", "60"),
        ("completed", "100"),
    ]


async def test_dead_consumer_removed_after_its_entries_are_reclaimed(
    store: Store, queue: str
) -> None:
    """A consumer that died holding a task loses it to reclaim, then leaves the group."""
    await store.submit([make_spec("t", queue=queue)])
    (held,) = await take(store, queue, "ghost:1:0", 1)
    supervisor = Supervisor(
        store, "sup:1:0", SupervisorConfig(lease_s=0.05, queues=(queue,), housekeeping_every=1)
    )

    async def ghost_gone() -> bool:
        await supervisor.sweep()
        await supervisor.housekeep_all()
        return "ghost:1:0" not in await store.consumers(queue)

    await eventually(ghost_gone)
    task = await store.get(held.id)
    assert task.status == Status.PENDING
    assert task.retry_count == 1
