"""Workflows at the script level on a real Redis: waiting, release, counters, hand-off."""

from __future__ import annotations

import pytest

from taskd.errors import ValidationError, WorkflowNotFound
from taskd.model import make_spec
from taskd.store import Store
from taskd.workflow import WorkflowSpec, make_workflow
from tests.conftest import eventually
from tests.enginetools import complete, take
from tests.flowtools import statuses, submit, task_of


def _t(key: str, *deps: str, **extra: object) -> dict[str, object]:
    return {"key": key, "task_type": "noop", "depends_on": list(deps), **extra}


def test_cycle_refused_naming_a_key_on_it() -> None:
    """A cycle is refused with a validation error naming a key on the cycle."""
    with pytest.raises(ValidationError) as info:
        make_workflow({"tasks": [_t("a"), _t("b", "a", "d"), _t("c", "b"), _t("d", "c")]})
    assert info.value.field.startswith("tasks.")
    assert any(k in info.value.message for k in ("'b'", "'c'", "'d'"))


def test_unknown_dependency_refused_naming_it() -> None:
    """A dependency on a key the workflow lacks is refused, naming that key."""
    with pytest.raises(ValidationError, match="'nope'"):
        make_workflow({"tasks": [_t("a"), _t("b", "nope")]})


def test_result_reference_outside_dependencies_refused() -> None:
    """A $result naming a task the referrer does not depend on is refused at submit."""
    with pytest.raises(ValidationError, match=r"\$result"):
        make_workflow({"tasks": [_t("a"), _t("b", payload={"x": {"$result": "a"}})]})


def test_unique_key_used_twice_in_one_queue_refused() -> None:
    """Two tasks of one workflow with the same unique_key in the same queue are refused,
    naming the second (they cannot both own the key)."""
    with pytest.raises(ValidationError) as info:
        make_workflow({"tasks": [_t("a", unique_key="u"), _t("b", "a", unique_key="u")]})
    assert info.value.field == "tasks.b.unique_key"
    assert "'a'" in info.value.message


def test_unique_key_shared_across_queues_allowed() -> None:
    """The same unique_key in two queues is two keys (each queue has its own), as for
    single submits."""
    spec = make_workflow(
        {"tasks": [_t("a", unique_key="u", queue="q1"), _t("b", unique_key="u", queue="q2")]}
    )
    assert [t.spec.unique_key for t in spec.tasks.values()] == ["u", "u"]


async def test_dependents_wait_and_count_in_stats(store: Store, queue: str) -> None:
    """Dependents are 'waiting' and counted under that status; roots are pending."""
    spec = await submit(store, [_t("a", queue=queue), _t("b", "a", queue=queue)])
    assert await statuses(store, spec) == {"a": "pending", "b": "waiting"}
    stats = await store.stats(queue)
    assert (stats["pending"], stats["waiting"], stats["total"]) == (1, 1, 2)


async def test_completion_releases_same_queue_child_atomically(store: Store, queue: str) -> None:
    """Completing the last parent makes its child pending in the same script call."""
    spec = await submit(store, [_t("a", queue=queue), _t("b", "a", queue=queue)])
    (a,) = await take(store, queue, "c1", 1)
    await complete(store, a, 1)
    assert (await task_of(store, spec, "b")).status == "pending"
    stats = await store.stats(queue)
    assert (stats["waiting"], stats["pending"], stats["completed"]) == (0, 1, 1)


async def test_cross_queue_child_released_through_outbox(store: Store, queue: str) -> None:
    """A child in another queue is released by draining the parent queue's outbox, and
    draining the same entry twice (a crash before its deletion) releases it once."""
    other = queue + "x"
    spec = await submit(store, [_t("a", queue=queue), _t("b", "a", queue=other)])
    (a,) = await take(store, queue, "c1", 1)
    await complete(store, a, 1)
    assert (await task_of(store, spec, "b")).status == "waiting"
    entries = await store.redis.xrange(store.keys(queue).outbox)
    await store._settle(store.keys(queue).outbox, entries)
    await store._settle(store.keys(queue).outbox, entries)  # a repeated delivery
    assert (await task_of(store, spec, "b")).status == "pending"
    assert (await store.stats(other))["pending"] == 1
    assert await store.drain_outboxes([queue]) == 0


async def test_fan_in_of_10000_releases_child_once(store: Store, queue: str) -> None:
    """A child of 10,000 parents is released exactly once, when the last completes."""
    n = 10_000
    tasks = [_t(f"p{i}", queue=queue) for i in range(n)]
    tasks.append(_t("sum", *[f"p{i}" for i in range(n)], queue=queue))
    spec = await submit(store, tasks)
    done = 0
    while done < n:
        for task in await take(store, queue, "c1", 500):
            await complete(store, task, done)
            done += 1
    child = await task_of(store, spec, "sum")
    assert child.status == "pending"
    released = [
        e
        for _, e in await store.redis.xrange(store.keys(queue).events, count=100_000)
        if e.get("kind") == "released" and e["id"] == child.id
    ]
    assert len(released) == 1
    stats = await store.stats(queue)
    assert (stats["completed"], stats["pending"], stats["waiting"]) == (n, 1, 0)


async def test_workflow_and_its_tasks_expire_together(store: Store, queue: str) -> None:
    """Task expiry keeps a workflow's finished tasks while the workflow runs; once it has
    ended longer than the retention ago, the workflow and all its tasks go together and
    the stats stay exact."""
    spec = await submit(store, [_t("a", queue=queue), _t("b", "a", queue=queue)])
    (a,) = await take(store, queue, "c1", 1)
    await complete(store, a, 1)
    await store.expire(queue, 0)
    await store.expire_workflows(0, limit=1000)
    assert (await task_of(store, spec, "a")).status == "completed"  # its workflow runs
    (b,) = await take(store, queue, "c1", 1)
    await complete(store, b, 2)
    await store.expire(queue, 0)
    assert (await store.stats(queue))["completed"] == 2  # still there, with the workflow
    await eventually(lambda: _expired(store, spec.id))
    stats = await store.stats(queue)
    assert (stats["completed"], stats["total"]) == (0, 0)
    assert await store.redis.zcard(store.keys(queue).index) == 0


async def _expired(store: Store, workflow_id: str) -> bool:
    await store.expire_workflows(0, limit=1000)
    try:
        await store.get_workflow(workflow_id)
    except WorkflowNotFound:
        return True
    return False


class TakesTheKeyMeanwhile(Store):
    """A store whose workflow submit, right after finding its unique keys free, lets a
    plain submit take one of them (another client, between two round trips)."""

    async def _refuse_taken_unique_keys(self, spec: WorkflowSpec) -> None:
        await super()._refuse_taken_unique_keys(spec)
        for t in spec.tasks.values():
            if t.spec.unique_key:
                plain = make_spec("noop", queue=t.spec.queue, unique_key=t.spec.unique_key)
                await self.submit([plain])


async def test_a_unique_key_taken_meanwhile_keeps_its_task(redis_url: str, queue: str) -> None:
    """A plain submit that takes a unique key between a workflow submit's check and its
    write keeps the key: the key goes on naming the plain task, not the workflow's."""
    racing = await TakesTheKeyMeanwhile.connect(redis_url)
    try:
        spec = await submit(racing, [_t("a", queue=queue, unique_key="order-7")])
        again = make_spec("noop", queue=queue, unique_key="order-7")
        ((named, created),) = await racing.submit([again])
        assert not created
        assert named.id != spec.tasks["a"].spec.id
        assert named.workflow_id is None
    finally:
        await racing.close()
