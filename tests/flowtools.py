"""Submitting and driving workflows in tests."""

from __future__ import annotations

from typing import Any

from taskd.model import Task
from taskd.store import Store
from taskd.workflow import WorkflowSpec, make_workflow


async def submit(store: Store, tasks: list[dict[str, Any]], name: str = "wf") -> WorkflowSpec:
    """Validate and write a workflow; returns its spec (ids by key)."""
    spec = make_workflow({"name": name, "tasks": tasks})
    await store.submit_workflow(spec)
    return spec


async def task_of(store: Store, spec: WorkflowSpec, key: str) -> Task:
    """The stored task of one workflow key."""
    t = spec.tasks[key].spec
    return await store.get(t.id, t.queue)


async def statuses(store: Store, spec: WorkflowSpec) -> dict[str, str]:
    """Every task's status by key."""
    return {key: str((await task_of(store, spec, key)).status) for key in spec.tasks}
