"""Named queues: preference and caps, pause/resume, purge, shared rate limits, schedules."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from taskd.engine.context import Context
from taskd.model import Status, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.enginetools import take
from tests.pooltools import one_running_one_reserved, registry_of, running_pool
from tests.procs import DaemonProcess
from tests.test_engine_states import wait_finished


async def test_queues_are_served_in_order_of_preference(store: Store, queue: str) -> None:
    """With free slots scarce, the first-listed queue's tasks start first."""
    high, low = f"{queue}-high", f"{queue}-low"
    order: list[str] = []

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        order.append(ctx.task.queue)

    await store.submit([make_spec("work", queue=low) for _ in range(5)])
    await store.submit([make_spec("work", queue=high) for _ in range(5)])
    async with running_pool(
        store, registry_of(work=work), high, queues=(high, low), concurrency=1, prefetch=0
    ):
        await eventually(lambda: asyncio.sleep(0, result=len(order) == 10))
    assert order == [high] * 5 + [low] * 5


async def test_queue_cap_limits_running_tasks_of_that_queue(store: Store, queue: str) -> None:
    """A queue capped at 1 never runs two tasks at once while others use the free slots."""
    capped, free = f"{queue}-capped", f"{queue}-free"
    running = {capped: 0, free: 0}
    peak = {capped: 0, free: 0}
    gate = asyncio.Event()

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        running[ctx.task.queue] += 1
        peak[ctx.task.queue] = max(peak[ctx.task.queue], running[ctx.task.queue])
        await gate.wait()
        running[ctx.task.queue] -= 1

    await store.submit([make_spec("work", queue=capped) for _ in range(4)])
    await store.submit([make_spec("work", queue=free) for _ in range(3)])
    async with running_pool(
        store,
        registry_of(work=work),
        capped,
        queues=(f"{capped}:1", free),
        concurrency=4,
        prefetch=0,
    ):
        await eventually(lambda: asyncio.sleep(0, result=running[free] == 3))
        assert running[capped] == 1
        gate.set()

        async def all_done() -> bool:
            done = [(await store.stats(q))["completed"] for q in (capped, free)]
            return sum(done) == 7

        await eventually(all_done)
    assert peak == {capped: 1, free: 3}


async def test_pause_stops_every_consumer_until_resume(store: Store, queue: str) -> None:
    """A paused queue accepts tasks but no daemon starts them; resume lets them run."""
    ran: list[str] = []

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        ran.append(ctx.task.id)

    registry = registry_of(work=work)
    await store.pause(queue)
    async with (
        running_pool(store, registry, queue, block_ms=50) as one,
        running_pool(store, registry, queue, block_ms=50) as two,
    ):
        tasks = [
            t for t, _ in await store.submit([make_spec("work", queue=queue) for _ in range(10)])
        ]
        # Both pools have looked at the queue and seen the pause (an observed fact, not
        # a timed wait): nothing may have started.
        await eventually(
            lambda: asyncio.sleep(
                0, result=queue in one.fetcher.paused and queue in two.fetcher.paused
            )
        )
        assert ran == []
        assert all(
            t.status == Status.PENDING
            for t in await store.get_many([(queue, t.id) for t in tasks])
            if t
        )
        await store.resume(queue)
        await eventually(lambda: asyncio.sleep(0, result=len(ran) == 10))
    assert sorted(ran) == sorted(t.id for t in tasks)


async def test_purge_cancels_every_waiting_task(store: Store, queue: str) -> None:
    """purge() cancels pending and delayed tasks of a queue and keeps counters exact."""
    await store.submit([make_spec("t", queue=queue, priority=p % 10 + 1) for p in range(30)])
    await store.submit([make_spec("t", queue=queue, delay_s=60) for _ in range(5)])
    assert await store.purge(queue, step=7) == 35
    stats = await store.stats(queue)
    assert (stats["pending"], stats["scheduled"], stats["cancelled"]) == (0, 0, 35)
    assert sum((await store.depth_by_priority(queue)).values()) == 0
    assert await take(store, queue, "c", 10) == []


@pytest.mark.slow
async def test_rate_limit_holds_across_three_daemons(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """20/s for a task type holds within 10% however many daemons run it."""
    env = {"TASKD_RATE_LIMITS": "sleepy=20/s", "TASKD_SWEEP_INTERVAL_S": "0.2"}
    args = (
        "--redis-url",
        redis_url,
        "--handlers",
        "tests.daemon_handlers",
        "--queues",
        queue,
        "--workers",
        "8",
    )
    daemons = [DaemonProcess(tmp_path / f"d{i}", *args, env=env) for i in range(3)]
    try:
        await asyncio.gather(*(d.ready() for d in daemons))
        submitted = [
            t
            for t, _ in await store.submit(
                [make_spec("sleepy", {"s": 0}, queue=queue) for _ in range(60)]
            )
        ]

        async def all_done() -> list[Any]:
            tasks = await store.get_many([(queue, t.id) for t in submitted])
            done = all(t is not None and t.status == Status.COMPLETED for t in tasks)
            return tasks if done else []

        tasks = await eventually(all_done, timeout_s=30)
    finally:
        for d in daemons:
            d.close()
    starts = sorted(t.started_at for t in tasks)
    rate = (len(starts) - 1) / ((starts[-1] - starts[0]) / 1000)
    workers = {t.worker.rsplit(":", 2)[0] + ":" + t.worker.rsplit(":", 2)[1] for t in tasks}
    print(f"observed {rate:.2f} tasks/s over {len(starts)} starts by {len(workers)} daemons")
    assert 18 <= rate <= 22
    assert len(workers) >= 2


@pytest.mark.slow
async def test_periodic_task_enqueued_once_per_occurrence(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """With 3 daemons running, each occurrence of an every-second schedule yields one task."""
    config = tmp_path / "taskd.toml"
    config.write_text(
        f'[[schedule]]\nname = "tick-{queue}"\ntask_type = "sleepy"\nevery_s = 1\n'
        f'queue = "{queue}"\npayload = {{ s = 0 }}\n'
    )
    args = (
        "--config",
        str(config),
        "--redis-url",
        redis_url,
        "--handlers",
        "tests.daemon_handlers",
        "--queues",
        queue,
    )
    daemons = [DaemonProcess(tmp_path / f"d{i}", *args) for i in range(3)]
    try:
        await asyncio.gather(*(d.ready() for d in daemons))

        async def occurrences() -> list[int]:
            page, _ = await store.list_tasks(queue=queue, limit=1000)
            found = sorted(int(t.unique_key.rsplit(":", 1)[1]) for t in page if t.unique_key)
            return found if len(found) >= 4 else []

        found = await eventually(occurrences, timeout_s=20)
    finally:
        for d in daemons:
            d.close()
    assert len(found) == len(set(found))
    assert [b - a for a, b in itertools.pairwise(found)] == [1000] * (len(found) - 1)


async def test_pause_holds_a_task_delivered_to_a_waiting_worker(store: Store, queue: str) -> None:
    """An entry a blocking read delivers after the pause goes back; it is not started."""
    await store.ensure_queue(queue)
    # Whether the blocking read reaches Redis before or after the submit, it delivers the
    # entry: the paused fetch must put it back either way.
    waiting = asyncio.create_task(store.wait_ready([queue], "c", 5000))
    await store.pause(queue)
    ((task, _),) = await store.submit([make_spec("t", queue=queue)])
    delivered = await waiting
    assert delivered[queue]
    fetched = await store.reserve_ready(queue, "c", 0, "", delivered[queue])
    assert fetched.paused
    assert fetched.tasks == []
    assert (await store.get(task.id)).status == Status.PENDING
    await store.resume(queue)
    (started,) = await take(store, queue, "c", 1)
    assert started.id == task.id


@pytest.mark.slow
async def test_a_daemon_corrects_a_drifted_depth_and_logs_it(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """A daemon's housekeeping sets a drifted depth counter back to the entries really
    waiting (two, held by a pause so no fetch touches the level) and logs depth_corrected."""
    await store.pause(queue)
    await store.submit([make_spec("t", queue=queue, priority=4) for _ in range(2)])
    await store.redis.hset(store.keys(queue).depth, "4", 0)
    daemon = DaemonProcess(
        tmp_path / "d",
        *("--redis-url", redis_url, "--queues", queue),
        env={"TASKD_SWEEP_INTERVAL_S": "0.05"},
    )
    try:
        await daemon.ready(timeout_s=60)

        async def corrected() -> bool:
            return (await store.depth_by_priority(queue))[4] == 2

        await eventually(corrected, timeout_s=20)
        await eventually(lambda: asyncio.sleep(0, "depth_corrected" in daemon.output()))
    finally:
        daemon.close()
    logged = daemon.log_path.read_text().splitlines()
    (line,) = [json.loads(line) for line in logged if "depth_corrected" in line]
    assert (line["queue"], line["priority"], line["found"], line["now"]) == (queue, 4, 0, 2)


async def test_pause_keeps_a_task_reserved_in_a_buffer_from_starting(
    store: Store, queue: str
) -> None:
    """A task a worker holds in its prefetch buffer when the queue is paused is not
    started: it goes back to the queue (pending, no attempt used) until resume."""
    async with one_running_one_reserved(store, queue, block_ms=50) as held:
        pool, first, second, ran = held.pool, held.first, held.second, held.ran
        assert (await store.get(second.id)).status == Status.RESERVED
        await store.pause(queue)
        held.gate.set()
        await wait_finished(store, first.id)

        async def handed_back() -> bool:
            return (await store.get(second.id)).status == Status.PENDING

        await eventually(handed_back)
        assert ran == ["first"]
        assert second.id not in pool.held
        await store.resume(queue)
        done = await wait_finished(store, second.id)
    assert ran == ["first", "second"]
    assert (done.status, done.retry_count) == (Status.COMPLETED, 0)
    stats = await store.stats(queue)
    assert (stats["completed"], stats["reserved"], stats["pending"]) == (2, 0, 0)
    assert sum((await store.depth_by_priority(queue)).values()) == 0
