"""A workflow submit that stopped half way (its process died, or Redis went away between
two of its round trips) is finished or undone by the supervisor's repair on a real Redis,
so no workflow is left waiting forever."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskd.engine.supervisor import Supervisor, SupervisorConfig
from taskd.errors import RedisUnavailable, WorkflowNotFound
from taskd.store import Store
from taskd.workflow import make_workflow
from tests.conftest import eventually
from tests.flowtools import statuses
from tests.pooltools import registry_of, running_pool


class StopsAt(Store):
    """A store whose connection drops just before the script named ``stop_at`` for the
    queue ``stop_queue`` (what a dying process leaves behind; Redis itself is real)."""

    stop_at = ""
    stop_queue = ""

    async def _pipelined(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        for i, (name, script_keys, _) in enumerate(calls):
            if name == self.stop_at and "{" + self.stop_queue + "}" in script_keys[0]:
                await super()._pipelined(calls[:i])  # what reached Redis before the drop
                raise RedisUnavailable("connection lost")
        return await super()._pipelined(calls)


@pytest.fixture
async def stopping(redis_url: str) -> AsyncIterator[StopsAt]:
    """A store that stops a submit where a test says."""
    s = await StopsAt.connect(redis_url)
    yield s
    await s.close()


def _chain(queue: str, other: str) -> Any:
    return make_workflow(
        {
            "tasks": [
                {"key": "a", "task_type": "step", "queue": queue},
                {"key": "b", "task_type": "step", "queue": other, "depends_on": ["a"]},
            ]
        }
    )


async def test_submit_stopped_before_release_is_finished_by_repair(
    store: Store, stopping: StopsAt, queue: str
) -> None:
    """A submit whose tasks were all written but whose roots were never released (the
    submitter stopped before wf_start) is rolled forward: the workflow then runs."""
    spec = _chain(queue, queue + "o")
    stopping.stop_at, stopping.stop_queue = "wf_start", queue
    with pytest.raises(RedisUnavailable):
        await stopping.submit_workflow(spec)
    assert await statuses(store, spec) == {"a": "waiting", "b": "waiting"}
    assert await store.repair_workflows(grace_ms=0) == 1

    async def step(ctx: Any, payload: dict[str, Any]) -> None:
        return None

    registry = registry_of(step=step)
    async with running_pool(store, registry, queue), running_pool(store, registry, queue + "o"):

        async def completed() -> bool:
            return (await store.get_workflow(spec.id))["status"] == "completed"

        await eventually(completed)


async def test_submit_stopped_half_written_is_undone_by_repair(
    store: Store, stopping: StopsAt, queue: str
) -> None:
    """A submit that wrote one queue's share of its tasks and stopped before the next is
    undone: its tasks and record are gone, the stats as before, nothing ever ran."""
    other = queue + "o"
    spec = _chain(queue, other)
    stopping.stop_at, stopping.stop_queue = "wf_add", other
    with pytest.raises(RedisUnavailable):
        await stopping.submit_workflow(spec)
    assert (await store.get_workflow(spec.id))["counts"]["waiting"] == 1
    assert await store.repair_workflows(grace_ms=0) == 1
    with pytest.raises(WorkflowNotFound):
        await store.get_workflow(spec.id)
    assert (await store.stats(queue))["total"] == 0
    assert (await store.stats(queue))["waiting"] == 0


async def test_repair_leaves_submits_within_grace_and_finished_ones(
    store: Store, queue: str
) -> None:
    """A finished submit is not a repair's business, and neither is one younger than the
    grace (it may still be writing)."""
    spec = _chain(queue, queue)
    await store.submit_workflow(spec)
    assert await store.repair_workflows(grace_ms=0) == 0
    assert await store.repair_workflows(grace_ms=60_000) == 0
    assert (await store.get_workflow(spec.id))["counts"]["pending"] == 1


async def test_housekeeping_repairs_a_stopped_submit(
    store: Store, stopping: StopsAt, queue: str
) -> None:
    """The supervisor's housekeeping pass runs the repair: a submit stopped before its
    release has its root pending afterwards."""
    spec = _chain(queue, queue)
    stopping.stop_at, stopping.stop_queue = "wf_start", queue
    with pytest.raises(RedisUnavailable):
        await stopping.submit_workflow(spec)
    config = SupervisorConfig(submit_grace_s=0, queues=(queue,))
    await Supervisor(store, f"test:{queue}", config).housekeep_all()
    assert await statuses(store, spec) == {"a": "pending", "b": "waiting"}
