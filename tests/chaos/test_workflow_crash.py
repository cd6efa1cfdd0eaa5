"""Workflows under process crashes: daemons SIGKILLed while a 2,000-task fan-out/fan-in
across two queues (so across the outbox hand-off) runs."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from taskd.store import Store
from taskd.workflow import make_workflow
from tests.chaos.harness import SIZES, Cluster, census, check_stats, report, statuses

pytestmark = [pytest.mark.slow, pytest.mark.timeout(max(SIZES.timeout_s, 300))]
MEMBERS = 2_000


async def test_sigkilled_daemons_release_every_dependent_once(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """A root fans out to 2,000 members in two queues that fan in to one join; with
    daemons SIGKILLed throughout, every task completes, every dependent counted each
    parent exactly once (deps_left ends at 0, one mark per parent), each was released
    once, and both queues' stats equal the tasks' real states."""
    other = queue + "b"
    rng = random.Random(18)
    tasks = [{"key": "root", "task_type": "work", "queue": queue, "payload": {"ms": 1}}]
    tasks += [
        {
            "key": f"m{i}",
            "task_type": "work",
            "queue": queue if i % 2 else other,
            "depends_on": ["root"],
            "payload": {"ms": rng.randint(1, 40)},
            "max_retries": 25,
        }
        for i in range(MEMBERS)
    ]
    tasks.append(
        {
            "key": "join",
            "task_type": "work",
            "queue": queue,
            "depends_on": [f"m{i}" for i in range(MEMBERS)],
            "max_retries": 25,
        }
    )
    spec = make_workflow({"name": "chaos", "tasks": tasks})
    config = {"tasks": {"lease_s": 2.0, "sweep_interval_s": 0.2}}
    cluster = Cluster(tmp_path, redis_url, f"{queue},{other}", workers=8, config=config)
    kills = 0
    try:
        await cluster.start(3)
        started = time.monotonic()
        await store.submit_workflow(spec)
        last_kill = time.monotonic()
        deadline = started + max(SIZES.timeout_s, 300) - 30
        while (view := await store.get_workflow(spec.id, with_tasks=False))["status"] == "running":
            assert time.monotonic() < deadline, view
            # The first kill once the fan-out is under way (a fast machine may run the
            # whole workflow within one kill interval), then one every interval.
            first_due = not kills and view["counts"]["completed"] >= MEMBERS // 20
            if first_due or time.monotonic() - last_kill >= SIZES.crash_kill_every_s:
                cluster.kill(rng.choice(cluster.alive))
                kills += 1
                cluster.spawn()
                last_kill = time.monotonic()
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        cluster.close()

    view = await store.get_workflow(spec.id)
    assert view["status"] == "completed", view["counts"]
    by_queue: dict[str, list[str]] = {}
    for t in spec.tasks.values():
        by_queue.setdefault(t.spec.queue, []).append(t.spec.id)
    for q, ids in by_queue.items():
        final = await census(store, q, ids)
        assert statuses(final) == {"completed": len(ids)}
        await check_stats(store, q, final)
    pipe = store.redis.pipeline(transaction=False)
    for t in spec.tasks.values():
        pipe.hgetall(store.keys(t.spec.queue).task(t.spec.id))
    for (key, t), raw in zip(spec.tasks.items(), await pipe.execute(), strict=True):
        assert raw["deps_left"] == "0", key
        marks = [f for f in raw if f.startswith("dep:")]
        assert len(marks) == len(t.depends_on), key
    join_id = spec.tasks["join"].spec.id
    events = await store.redis.xrange(store.keys(queue).events, count=1_000_000)
    assert [e["id"] for _, e in events if e["kind"] == "released"].count(join_id) == 1
    assert await store.drain_outboxes([queue, other]) == 0
    report("workflow_crash", tasks=len(tasks), daemons=3, kills=kills, elapsed_s=round(elapsed, 1))
    assert kills, "the run ended before any daemon was killed"
