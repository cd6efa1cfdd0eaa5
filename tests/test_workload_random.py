"""A long random workload on real daemons (submits, delays, cancels, purges, deletes, hand
retries, pauses, rate limits, killed daemons) ends with every priority's depth counter
equal to the ready entries really in the streams."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from pathlib import Path

import pytest

from taskd.errors import TaskdError
from taskd.keys import GROUP
from taskd.model import make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.procs import DaemonProcess

SECONDS = 20.0


async def _truth(store: Store, queue: str) -> dict[int, int]:
    """Per priority: live entries after the group's last-delivered id, plus entries a
    blocking read delivered whose task is still pending under that entry (the counter
    keeps those until fetch takes them)."""
    k = store.keys(queue)
    truth: dict[int, int] = {}
    for priority, stream in k.streams.items():
        groups = await store.redis.xinfo_groups(stream)
        last = next(g["last-delivered-id"] for g in groups if g["name"] == GROUP)
        count = len(await store.redis.xrange(stream, f"({last}", "+"))
        for row in await store.redis.xpending_range(stream, GROUP, "-", "+", 100_000):
            sid = row["message_id"]
            entries = await store.redis.xrange(stream, sid, sid)
            if entries:
                status, task_sid = await store.redis.hmget(
                    k.task(entries[0][1]["id"]), "status", "sid"
                )
                count += status == "pending" and task_sid == sid
        truth[priority] = count
    return truth


class Workload:
    """Random operations on one queue; ``racing`` adds cancels of any task, which can hit
    a pending task a blocking read has just delivered."""

    def __init__(self, store: Store, queue: str, rng: random.Random, racing: bool) -> None:
        self.store, self.queue, self.rng, self.racing = store, queue, rng, racing
        self.ids: list[str] = []
        self.parked: list[str] = []  # scheduled an hour ahead: cancelling them never races

    async def submit(self) -> None:
        rng = self.rng
        specs = []
        for _ in range(rng.randint(1, 20)):
            delay = rng.choice([None] * 8 + [rng.uniform(0.1, 2.0), 3600.0])
            payload = {"s": rng.uniform(0, 0.05), "fail": rng.random() < 0.2}
            spec = make_spec(
                rng.choice(["chancy", "sleepy"]),
                payload,
                queue=self.queue,
                priority=rng.randint(1, 10),
                max_retries=rng.randint(0, 1),
                delay_s=delay,
            )
            specs.append(spec)
            (self.parked if delay == 3600.0 else self.ids).append(spec.id)
        await self.store.submit(specs)
        if self.racing and rng.random() < 0.5:  # while an idle worker's read delivers it
            await self.store.cancel(rng.choice(specs).id)

    async def step(self) -> None:
        """One random operation (a refused one, e.g. deleting a running task, is fine)."""
        rng, store = self.rng, self.store
        op = rng.choices(
            ["submit", "cancel_parked", "cancel_any", "retry", "delete", "purge", "pause"],
            weights=[30, 5, 15 if self.racing else 0, 10, 10, 1, 1],
        )[0]
        try:
            if op == "submit":
                await self.submit()
            elif op == "cancel_parked" and self.parked:
                await store.cancel(self.parked.pop(rng.randrange(len(self.parked))))
            elif op == "cancel_any" and self.ids:
                await store.cancel(rng.choice(self.ids[-50:]))
            elif op == "retry" and self.ids:
                await store.retry(rng.choice(self.ids))
            elif op == "delete" and self.ids:
                await store.delete(rng.choice(self.ids))
            elif op == "purge":
                await store.purge(self.queue)
            elif op == "pause":
                await store.pause(self.queue)
                await asyncio.sleep(rng.uniform(0.05, 0.5))  # how long it stays paused
                await store.resume(self.queue)
        except TaskdError:  # not found (expired, deleted) or the wrong state
            pass


@pytest.mark.slow
@pytest.mark.parametrize("racing", [False, True], ids=["controls", "cancels-racing-delivery"])
async def test_random_workload_keeps_every_depth_exact(
    store: Store, queue: str, redis_url: str, tmp_path: Path, racing: bool
) -> None:
    """After a random workload with killed daemons, each priority's depth counter equals
    the entries really waiting, once everything ran and again with 40 new tasks held by
    a pause, and housekeeping never had a drift to correct."""
    env = {
        "TASKD_RATE_LIMITS": f"chancy=150/s,queue:{queue}=250/s",
        "TASKD_LEASE_S": "1.5",
        "TASKD_SWEEP_INTERVAL_S": "0.2",
    }
    args = ("--redis-url", redis_url, "--handlers", "tests.daemon_handlers")
    args += ("--queues", queue, "--workers", "4")
    started = 0

    def daemon() -> DaemonProcess:
        nonlocal started
        started += 1
        return DaemonProcess(tmp_path / f"d{started}", *args, env=env)

    seed = int(os.environ.get("TASKD_TEST_SEED") or random.randrange(1 << 30))
    print(f"seed {seed}")
    rng = random.Random(seed)
    workload = Workload(store, queue, rng, racing)
    daemons = [daemon(), daemon()]
    gone: list[DaemonProcess] = []
    try:
        await asyncio.gather(*(d.ready(timeout_s=60) for d in daemons))
        deadline = time.monotonic() + SECONDS
        next_kill = time.monotonic() + rng.uniform(3, 8)
        while time.monotonic() < deadline:
            await workload.step()
            if time.monotonic() > next_kill:
                victim = daemons.pop(rng.randrange(len(daemons)))
                victim.kill(signal.SIGKILL)
                gone.append(victim)
                daemons.append(daemon())
                next_kill = time.monotonic() + rng.uniform(3, 8)
            await asyncio.sleep(rng.uniform(0, 0.02))  # the workload's pace
        await store.resume(queue)
        for task_id in workload.parked:
            with contextlib.suppress(TaskdError):  # a purge may have cancelled it
                await store.cancel(task_id)
        await eventually(lambda: _settled(store, queue), timeout_s=60)
        print("final counts", await store.stats(queue))
        await store.pause(queue)  # ready entries stay put, so the check below sees some
        await store.submit(
            [make_spec("sleepy", queue=queue, priority=p % 10 + 1) for p in range(40)]
        )
        await eventually(lambda: _matches(store, queue, 40), timeout_s=30)
        await store.resume(queue)
    finally:
        for d in daemons + gone:
            d.close()
    logs = "\n".join(d.log_path.read_text(errors="replace") for d in daemons + gone)
    corrections = [line for line in logs.splitlines() if "depth_corrected" in line]
    print(f"{len(corrections)} corrections by housekeeping", *corrections, sep="\n")
    assert corrections == []  # depth is exact by construction on every path


async def _matches(store: Store, queue: str, ready: int) -> bool:
    """True when each depth counter equals the entries really waiting at its level (and
    those are ``ready`` in all)."""
    truth = await _truth(store, queue)
    depth = await store.redis.hgetall(store.keys(queue).depth)
    counters = {p: int(depth.get(str(p), 0)) for p in range(1, 11)}
    return counters == truth and sum(truth.values()) == ready


async def _settled(store: Store, queue: str) -> bool:
    """True once nothing is waiting, delayed or running and every depth counter is 0
    (any drift left is corrected by housekeeping within seconds: a counter that stays
    wrong fails the test)."""
    k = store.keys(queue)
    if await store.redis.zcard(k.delayed) or (await store.stats(queue))["processing"]:
        return False
    if any((await _truth(store, queue)).values()):
        return False
    depth = await store.redis.hgetall(k.depth)
    return all(int(depth.get(str(p), 0)) == 0 for p in range(1, 11))
