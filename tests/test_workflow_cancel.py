"""Cancelling a whole workflow on a real Redis: every unfinished task ends cancelled and
none is released (so started) on the way."""

from __future__ import annotations

import asyncio
from typing import Any

from taskd.engine.context import Context
from taskd.store import Store
from tests.conftest import eventually
from tests.flowtools import statuses, submit, task_of
from tests.pooltools import registry_of, running_pool


def _t(key: str, *deps: str, queue: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "task_type": "step", "depends_on": list(deps), "queue": queue, **extra}


async def test_workflow_cancel_never_releases_a_run_on_failure_member(
    store: Store, queue: str
) -> None:
    """A waiting run_on_failure member is cancelled by a workflow cancel without being
    released first (the cancel of its parent must not make it pending, where a worker
    would start it)."""
    spec = await submit(
        store,
        [
            _t("a", queue=queue),
            _t("b", "a", queue=queue),
            _t("report", "b", queue=queue, run_on_failure=True),
        ],
    )
    await store.cancel_workflow(spec.id)
    assert await statuses(store, spec) == dict.fromkeys(("a", "b", "report"), "cancelled")
    events, _ = await store.task_events(await task_of(store, spec, "report"))
    assert [e.kind for e in events] == ["created", "cancelled"]


async def test_workflow_cancel_while_root_runs_starts_nothing(store: Store, queue: str) -> None:
    """Cancelling a workflow whose root is running ends every task cancelled, and its
    run_on_failure "finally" step never starts on a live pool."""
    started = asyncio.Event()
    ran: list[str] = []

    async def step(ctx: Context, payload: dict[str, Any]) -> None:
        ran.append(payload["k"])
        if payload["k"] == "a":
            started.set()
            await asyncio.Event().wait()  # until the cancel stops it

    spec = await submit(
        store,
        [
            _t("a", queue=queue, payload={"k": "a"}),
            _t("b", "a", queue=queue, payload={"k": "b"}),
            _t("report", "b", queue=queue, run_on_failure=True, payload={"k": "report"}),
        ],
    )
    async with running_pool(store, registry_of(step=step), queue):
        await asyncio.wait_for(started.wait(), timeout=10)
        await store.cancel_workflow(spec.id)

        async def all_cancelled() -> bool:
            return set((await statuses(store, spec)).values()) == {"cancelled"}

        await eventually(all_cancelled)
    assert ran == ["a"]
    assert (await store.get_workflow(spec.id))["status"] == "cancelled"
