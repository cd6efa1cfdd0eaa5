"""Workflows run by a real worker pool and supervisor on a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from taskd.engine.context import Context
from taskd.errors import Fail
from taskd.store import Store
from tests.conftest import eventually
from tests.flowtools import statuses, submit, task_of
from tests.pooltools import registry_of, running_pool


def _t(key: str, *deps: str, task_type: str = "step", **extra: Any) -> dict[str, Any]:
    return {"key": key, "task_type": task_type, "depends_on": list(deps), **extra}


def _all_finished(store: Store, spec: Any) -> Any:
    async def check() -> dict[str, str] | None:
        found = await statuses(store, spec)
        done = all(s in ("completed", "failed", "cancelled") for s in found.values())
        return found if done else None

    return check


async def test_chain_runs_in_order(store: Store, queue: str) -> None:
    """A chain's tasks start one after the other, each after its parent completed."""
    order: list[str] = []

    async def step(ctx: Context, payload: dict[str, Any]) -> str:
        order.append(payload["k"])
        return str(payload["k"])

    tasks = [_t("a", queue=queue, payload={"k": "a"})]
    tasks += [_t(k, p, queue=queue, payload={"k": k}) for p, k in zip("abc", "bcd", strict=True)]
    spec = await submit(store, tasks)
    async with running_pool(store, registry_of(step=step), queue):
        await eventually(_all_finished(store, spec))
    assert order == ["a", "b", "c", "d"]


async def test_group_members_run_in_parallel(store: Store, queue: str) -> None:
    """A group's members run at the same time (each waits until all have started)."""
    started = 0
    all_in = asyncio.Event()

    async def step(ctx: Context, payload: dict[str, Any]) -> int:
        nonlocal started
        started += 1
        if started == 3:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), timeout=10)
        return started

    spec = await submit(store, [_t(k, queue=queue) for k in ("a", "b", "c")])
    async with running_pool(store, registry_of(step=step), queue):
        found = await eventually(_all_finished(store, spec))
    assert set(found.values()) == {"completed"}


async def test_diamond_passes_results_by_ref_and_ctx_parents(store: Store, queue: str) -> None:
    """In a diamond, the join sees both branches in ctx.parents and gets $result values
    (whole results and dotted paths) substituted into its payload."""
    seen: dict[str, Any] = {}

    async def step(ctx: Context, payload: dict[str, Any]) -> Any:
        if payload.get("join"):
            seen["parents"] = ctx.parents
            seen["payload"] = payload
        return {"n": payload.get("n", 0), "list": [payload.get("n", 0)]}

    spec = await submit(
        store,
        [
            _t("top", queue=queue, payload={"n": 1}),
            _t("left", "top", queue=queue, payload={"n": 2}),
            _t("right", "top", queue=queue + "r", payload={"n": 3}),
            _t(
                "join",
                "left",
                "right",
                queue=queue,
                payload={"join": True, "l": {"$result": "left.n"}, "r": {"$result": "right"}},
            ),
        ],
    )
    registry = registry_of(step=step)
    async with (
        running_pool(store, registry, queue),
        running_pool(store, registry, queue + "r"),
    ):
        await eventually(_all_finished(store, spec))
    assert await statuses(store, spec) == dict.fromkeys(
        ("top", "left", "right", "join"), "completed"
    )
    assert seen["parents"] == {"left": {"n": 2, "list": [2]}, "right": {"n": 3, "list": [3]}}
    assert seen["payload"] == {"join": True, "l": 2, "r": {"n": 3, "list": [3]}}


async def test_missing_result_path_fails_task_clearly(store: Store, queue: str) -> None:
    """A $result path that leads nowhere fails the task with an error naming the path."""

    async def step(ctx: Context, payload: dict[str, Any]) -> Any:
        return {"a": 1}

    spec = await submit(
        store,
        [_t("a", queue=queue), _t("b", "a", queue=queue, payload={"x": {"$result": "a.b.c"}})],
    )
    async with running_pool(store, registry_of(step=step), queue):
        await eventually(_all_finished(store, spec))
    b = await task_of(store, spec, "b")
    assert b.status == "failed"
    assert b.error is not None
    assert "'a.b'" in b.error


async def test_failure_cancels_dependents_transitively(store: Store, queue: str) -> None:
    """A terminal failure, after its retries, cancels dependents transitively with
    'dependency <key> failed'; a run_on_failure dependent runs and sees the error."""
    attempts = 0
    seen: dict[str, Any] = {}

    async def step(ctx: Context, payload: dict[str, Any]) -> Any:
        nonlocal attempts
        if payload.get("boom"):
            attempts += 1
            raise RuntimeError("boom")
        if payload.get("finally"):
            seen.update(ctx.parents)
        return 1

    spec = await submit(
        store,
        [
            _t("a", queue=queue, payload={"boom": True}, max_retries=2),
            _t("b", "a", queue=queue),
            _t("c", "b", queue=queue + "c"),
            _t("fin", "a", queue=queue, payload={"finally": True}, run_on_failure=True),
        ],
    )
    registry = registry_of(step=step)
    async with running_pool(store, registry, queue), running_pool(store, registry, queue + "c"):
        found = await eventually(_all_finished(store, spec))
    assert found == {"a": "failed", "b": "cancelled", "c": "cancelled", "fin": "completed"}
    assert attempts == 3
    for key in ("b", "c"):
        assert (await task_of(store, spec, key)).error == "dependency a failed"
    assert seen["a"]["status"] == "failed"
    assert "boom" in seen["a"]["error"]
    stats = await store.stats(queue)
    assert (stats["waiting"], stats["cancelled"], stats["failed"]) == (0, 1, 1)


async def test_hand_retry_rearms_cancelled_dependents(store: Store, queue: str) -> None:
    """Retrying a failed task by hand brings its cancelled dependents back to waiting,
    and they run once it completes."""
    fail_first = True

    async def step(ctx: Context, payload: dict[str, Any]) -> Any:
        nonlocal fail_first
        if payload.get("flaky") and fail_first:
            fail_first = False
            raise Fail("first time")
        return 1

    spec = await submit(
        store,
        [
            _t("a", queue=queue, payload={"flaky": True}),
            _t("b", "a", queue=queue + "b"),
            _t("c", "b", queue=queue),
        ],
    )
    registry = registry_of(step=step)
    async with running_pool(store, registry, queue), running_pool(store, registry, queue + "b"):
        await eventually(_all_finished(store, spec))
        assert (await statuses(store, spec))["c"] == "cancelled"
        await store.retry(spec.tasks["a"].spec.id)
        found = await eventually(_completed_all(store, spec))
    assert set(found.values()) == {"completed"}
    assert (await store.stats(queue))["cancelled"] == 0


def _completed_all(store: Store, spec: Any) -> Any:
    async def check() -> dict[str, str] | None:
        found = await statuses(store, spec)
        return found if set(found.values()) == {"completed"} else None

    return check


async def test_cancelling_waiting_task_cancels_its_dependents(store: Store, queue: str) -> None:
    """A waiting task can be cancelled, and its dependents are cancelled with it."""
    spec = await submit(
        store, [_t("a", queue=queue), _t("b", "a", queue=queue), _t("c", "b", queue=queue)]
    )
    assert await store.cancel(spec.tasks["b"].spec.id) == "cancelled"
    c = await task_of(store, spec, "c")
    assert (c.status, c.error) == ("cancelled", "dependency b cancelled")
    stats = await store.stats(queue)
    assert (stats["waiting"], stats["cancelled"], stats["pending"]) == (0, 2, 1)


async def test_hand_retry_of_a_dependent_waits_for_its_unfinished_parent(
    store: Store, queue: str
) -> None:
    """Retrying by hand a dependent that its parent's failure cancelled makes it wait
    for that parent again (it never runs without its dependency's result); it runs once
    the parent, retried too, completes."""
    ran: list[tuple[str, Any]] = []
    fail_first = True

    async def step(ctx: Context, payload: dict[str, Any]) -> Any:
        nonlocal fail_first
        ran.append((payload["k"], payload.get("x")))
        if payload["k"] == "a" and fail_first:
            fail_first = False
            raise Fail("first time")
        return {"v": 7}

    spec = await submit(
        store,
        [
            _t("a", queue=queue, payload={"k": "a"}),
            _t("b", "a", queue=queue, payload={"k": "b", "x": {"$result": "a.v"}}),
        ],
    )
    async with running_pool(store, registry_of(step=step), queue):
        await eventually(_all_finished(store, spec))
        retried = await store.retry(spec.tasks["b"].spec.id)
        assert (retried.status, retried.error) == ("waiting", None)
        assert (await store.stats(queue))["waiting"] == 1
        await store.retry(spec.tasks["a"].spec.id)
        found = await eventually(_completed_all(store, spec))
    assert set(found.values()) == {"completed"}
    assert ran == [("a", None), ("a", None), ("b", 7)]
