"""A workflow as users see it (status, counts per task status, its tasks), and the
actions on a whole workflow: cancel and delete.

A workflow's status is derived from its tasks' statuses, read in one round trip:
``running`` while any task is unfinished, then ``failed`` if any failed, ``cancelled``
if any was cancelled (or the workflow was), else ``completed``.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import redis.exceptions as rexc

from taskd import keys
from taskd.errors import (
    TaskNotFound,
    ValidationError,
    WorkflowNotFound,
    WorkflowWrongState,
    WrongState,
)
from taskd.model import FINISHED, STATUS_NAMES, Status, Task, ms_to_iso
from taskd.store.base import Call
from taskd.store.flows import FlowOps
from taskd.store.translate import translated
from taskd.workflow import WorkflowSpec, dependency_order

WORKFLOW_STATUSES = ("running", "completed", "failed", "cancelled")
MAX_LIST_SCAN = 1000  # workflows one list call looks at when filtering by status
MAX_LIST_LIMIT = 200  # workflows one list call returns at most (GET /api/workflows too)


def workflow_status(statuses: list[str], cancelled: bool) -> str:
    """running / failed / cancelled / completed from the task statuses (see module doc)."""
    if any(Status(s) not in FINISHED for s in statuses):
        return "cancelled" if cancelled else "running"
    if "failed" in statuses:
        return "failed"
    if cancelled or "cancelled" in statuses:
        return "cancelled"
    return "completed"


def counts_of(statuses: list[str]) -> dict[str, int]:
    """Count per task status (every status present, zero or not) and ``total``."""
    found = Counter(statuses)
    return {s: found.get(s, 0) for s in STATUS_NAMES} | {"total": len(statuses)}


class FlowViewOps(FlowOps):
    """Workflows as the API, the client and the CLI see them."""

    async def get_workflow(self, workflow_id: str, *, with_tasks: bool = True) -> dict[str, Any]:
        """The workflow's JSON shape: id, name, status, counts, created_at and, with
        ``with_tasks``, each task by key (id, status, queue, depends_on, result, ...)."""
        record = await self.workflow_record(workflow_id)
        if with_tasks:
            tasks = await self.workflow_tasks(record)
            statuses = [str(t.status) for t in tasks.values() if t is not None]
        else:
            statuses = await self._statuses(record)
        view: dict[str, Any] = {
            "id": record["id"],
            "name": record["name"],
            "status": workflow_status(statuses, record["cancelled"]),
            "created_at": ms_to_iso(record["created_at"]),
            "counts": counts_of(statuses),
        }
        if with_tasks:
            view["tasks"] = {key: _task_view(t) for key, t in tasks.items() if t is not None}
        return view

    async def _statuses(self, record: dict[str, Any]) -> list[str]:
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for _, queue, task_id, _ in record["tasks"]:
                pipe.hget(self.keys(queue).task(task_id), "status")
            return [s for s in await pipe.execute() if s]

    async def list_workflows(
        self, *, limit: int = 50, cursor: str | None = None, status: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first (without their tasks); ``cursor`` continues after the last one a
        previous call returned (its ``created_ms:id``); returns the next cursor or None.
        ValidationError (naming the argument) for an unknown status, a limit outside
        1..MAX_LIST_LIMIT or a cursor no listing returned."""
        if status is not None and status not in WORKFLOW_STATUSES:
            raise ValidationError("status", f"must be one of {', '.join(WORKFLOW_STATUSES)}")
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_LIST_LIMIT
        ):
            raise ValidationError("limit", f"must be an integer from 1 to {MAX_LIST_LIMIT}")
        before_ms, before_id = _parse_cursor(cursor)
        found: list[dict[str, Any]] = []
        scanned = 0
        while len(found) < limit and scanned < MAX_LIST_SCAN:
            rows = await self.workflow_ids(limit + 50, before_ms)
            rows = [(i, ms) for i, ms in rows if not (ms == before_ms and i >= before_id)]
            if not rows:
                return found, None
            for workflow_id, ms in rows:
                scanned += 1
                before_ms, before_id = ms, workflow_id
                try:
                    view = await self.get_workflow(workflow_id, with_tasks=False)
                except WorkflowNotFound:
                    continue
                if status is None or view["status"] == status:
                    found.append(view)
                if len(found) >= limit or scanned >= MAX_LIST_SCAN:
                    break
        return found, f"{before_ms}:{before_id}"

    async def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Cancel every unfinished task (running ones cooperatively); the workflow's
        status is ``cancelled`` from now on unless it already ended.

        The run_on_failure members go first, children before parents: cancelling any
        task releases its waiting run_on_failure dependents (that is what the flag
        means), and a released task may start before this loop reaches it. The others
        follow parents first, so a dependent is cancelled by its parent's cancellation
        (error ``dependency <key> cancelled``, which a hand retry of the parent re-arms)
        and a root is stopped before it can release anything. Safe to repeat.
        """
        record = await self.workflow_record(workflow_id)
        found = await self._cancel_states(record)
        statuses = [status for status, _ in found.values()]
        if workflow_status(statuses, cancelled=False) != "running":
            raise WorkflowWrongState(workflow_id, workflow_status(statuses, False), "cancel")
        await self.mark_workflow(workflow_id, cancelled="1")
        for task_id in _cancel_order(record, found):
            try:
                await self.cancel(task_id)  # type: ignore[attr-defined]  # TaskOps, in Store
            except (WrongState, TaskNotFound):
                continue  # finished, or cancelled by a dependency's cancellation
        return await self.get_workflow(workflow_id)

    async def _cancel_states(self, record: dict[str, Any]) -> dict[str, tuple[str, bool]]:
        """Each present task's (status, run_on_failure) by key, one round trip."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for _, queue, task_id, _ in record["tasks"]:
                pipe.hmget(self.keys(queue).task(task_id), "status", "run_on_failure")
            rows = await pipe.execute()
        return {
            t[0]: (str(status), flag == "1")
            for t, (status, flag) in zip(record["tasks"], rows, strict=True)
            if status
        }

    async def delete_workflow(self, workflow_id: str) -> None:
        """Delete a finished workflow and its tasks; WrongState while it runs."""
        record = await self.workflow_record(workflow_id)
        statuses = await self._statuses(record)
        status = workflow_status(statuses, record["cancelled"])
        if any(Status(s) not in FINISHED for s in statuses):
            raise WorkflowWrongState(workflow_id, status, "delete")
        for _, _, task_id, _ in record["tasks"]:
            try:
                await self.delete(task_id)  # type: ignore[attr-defined]  # TaskOps, in Store
            except TaskNotFound:
                continue
        await self.forget_workflow(workflow_id)


class FlowExpiry(FlowViewOps):
    """Retention of workflows: a workflow and its tasks go together."""

    async def expire_workflows(self, retention_ms: int, limit: int = 20) -> int:
        """Delete up to ``limit`` workflows (oldest first) whose every task finished more
        than ``retention_ms`` ago, with their tasks; returns how many went.

        Only workflows created before the cutoff can qualify, so the scan starts at the
        oldest and stops there; one still running is looked at again next time.
        """
        cutoff = await self.time_ms() - retention_ms
        async with translated():
            old = await self.redis.zrange(
                keys.WORKFLOWS, "-inf", cutoff, byscore=True, offset=0, num=limit
            )
        gone = 0
        for workflow_id in old:
            try:
                record = await self.workflow_record(str(workflow_id))
            except WorkflowNotFound:
                await self.forget_workflow(str(workflow_id))
                continue
            if await self._ended_before(record, cutoff):
                await self._delete_tasks(record)
                await self.forget_workflow(record["id"])
                gone += 1
        return gone

    async def _ended_before(self, record: dict[str, Any], cutoff: int) -> bool:
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for _, queue, task_id, _ in record["tasks"]:
                pipe.hmget(self.keys(queue).task(task_id), "status", "completed_at")
            rows = await pipe.execute()
        for status, completed_at in rows:
            if status is None:
                continue  # deleted by hand
            if Status(status) not in FINISHED or int(completed_at or 0) > cutoff:
                return False
        return True

    async def _delete_tasks(self, record: dict[str, Any]) -> None:
        """The delete script for each task, its queue known (no lookup)."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for _, queue, task_id, _ in record["tasks"]:
                pipe.hget(self.keys(queue).task(task_id), "unique_key")
            uniques = await pipe.execute()
        calls: list[Call] = []
        for (_, queue, task_id, _), unique in zip(record["tasks"], uniques, strict=True):
            k = self.keys(queue)
            task_key = k.task(task_id)
            pointer = k.unique(unique) if unique else task_key
            script_keys = [task_key, k.stats, k.index, k.finished, k.dead, k.events, pointer]
            calls.append(("delete", script_keys, [self.events_maxlen]))
        for i in range(0, len(calls), 500):
            await self._delete_chunk(calls[i : i + 500])

    async def _delete_chunk(self, calls: list[Call]) -> None:
        async with translated():
            try:
                await self._pipelined(calls)
            except rexc.ResponseError:  # one already gone (another daemon): one by one
                for call in calls:
                    with contextlib.suppress(rexc.ResponseError):
                        await self._pipelined([call])


def submitted_view(spec: WorkflowSpec, created_ms: int) -> dict[str, Any]:
    """The view of a workflow as its submit wrote it (the answer to the submit, like a
    task's): roots pending (scheduled when delayed), the others waiting. A re-read could
    already show roots taken by workers; GET /api/workflows/{id} is the live view."""
    statuses: dict[str, str] = {}
    for key, task in spec.tasks.items():
        s = task.spec
        due = max(created_ms + (s.delay_ms or 0), s.run_at_ms or 0)
        if task.depends_on:
            statuses[key] = "waiting"
        else:
            statuses[key] = "scheduled" if due > created_ms else "pending"
    return {
        "id": spec.id,
        "name": spec.name,
        "status": "running",
        "created_at": ms_to_iso(created_ms),
        "counts": counts_of(list(statuses.values())),
        "tasks": {
            key: {
                "id": t.spec.id,
                "name": t.spec.name,
                "task_type": t.spec.task_type,
                "queue": t.spec.queue,
                "status": statuses[key],
                "progress": 0,
                "depends_on": list(t.depends_on),
                "result": None,
                "error": None,
            }
            for key, t in spec.tasks.items()
        },
    }


def _cancel_order(record: dict[str, Any], found: dict[str, tuple[str, bool]]) -> list[str]:
    """The ids of the unfinished tasks in the order a workflow cancel takes them: the
    run_on_failure ones children first, then the rest parents first."""
    order = dependency_order({key: deps for key, _, _, deps in record["tasks"]})
    ids = {key: task_id for key, _, task_id, _ in record["tasks"]}
    unfinished = [k for k in order if k in found and Status(found[k][0]) not in FINISHED]
    last_resort = [k for k in reversed(unfinished) if found[k][1]]
    return [ids[k] for k in last_resort] + [ids[k] for k in unfinished if not found[k][1]]


def _task_view(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "task_type": task.task_type,
        "queue": task.queue,
        "status": str(task.status),
        "progress": task.progress,
        "depends_on": task.depends_on or [],
        "result": task.result,
        "error": task.error,
    }


def _parse_cursor(cursor: str | None) -> tuple[float | None, str]:
    if not cursor:
        return None, ""
    ms, colon, last_id = cursor.partition(":")
    if not ms.isdigit() or not colon:
        raise ValidationError("cursor", "not a cursor this listing returned")
    return int(ms), last_id
