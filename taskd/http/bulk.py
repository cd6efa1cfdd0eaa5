"""Bulk actions: retry every failed task (of a type), cancel every waiting one.

``POST /api/tasks/bulk/retry`` and ``POST /api/tasks/bulk/cancel`` take
``{"status", "task_type", "queue", "dry_run", "limit"}``. A dry run only counts, so a
client can say how many tasks an action will touch before it runs.

Each call does a bounded amount of work: at most ``limit`` tasks, and no new page of
tasks once half the request deadline is spent, so a large action never turns into a 503
halfway through. ``more`` says that matching tasks may remain; acting on a task moves
it out of the filter (failed -> pending, pending -> cancelled), so the client simply
repeats the same call until ``more`` is false.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from taskd.errors import TaskNotFound, ValidationError, WrongState
from taskd.http.api import read_json
from taskd.http.shapes import json_response
from taskd.http.state import STATE
from taskd.model import QUEUE_NAME, TASK_TYPE_NAME, Task, int_in
from taskd.paging import Cursor
from taskd.store import Store

#: Statuses each action may select, the first being the default.
STATUSES: Final = {
    "retry": ("failed", "cancelled"),
    "cancel": ("pending", "scheduled", "retrying"),
}
FIELDS: Final = frozenset({"status", "task_type", "queue", "dry_run", "limit"})
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
PAGE: Final = 200
CONCURRENCY: Final = 32


@dataclass(frozen=True, slots=True)
class Selection:
    """Which tasks a bulk call is about, and how much it may do."""

    action: str
    status: str
    task_type: str | None
    queue: str | None
    dry_run: bool
    limit: int

    def accepts(self, task: Task) -> bool:
        """Whether a task is selected."""
        return task.status == self.status and (
            self.task_type is None or task.task_type == self.task_type
        )


def parse(action: str, body: Any) -> Selection:
    """Validate a bulk body; every problem is a ValidationError naming its field."""
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    if unknown := sorted(set(body) - FIELDS):
        raise ValidationError(unknown[0], "unknown field")
    allowed = STATUSES[action]
    status = body.get("status", allowed[0])
    if status not in allowed:
        raise ValidationError("status", f"must be one of {', '.join(allowed)} to {action}")
    task_type = body.get("task_type")
    if task_type is not None and (
        not isinstance(task_type, str) or not TASK_TYPE_NAME.fullmatch(task_type)
    ):
        raise ValidationError("task_type", "must be a task type name or null")
    queue = body.get("queue")
    if queue is not None and (not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue)):
        raise ValidationError("queue", "must be a queue name or null")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValidationError("dry_run", "must be true or false")
    limit = int_in("limit", body.get("limit", DEFAULT_LIMIT), 1, MAX_LIMIT)
    return Selection(action, status, task_type, queue, dry_run, limit)


async def _exact_count(store: Store, sel: Selection) -> int:
    """Without a type filter the per-status counters answer a dry run exactly, in O(1)."""
    return (await store.stats(sel.queue)).get(sel.status, 0)


async def _apply(store: Store, sel: Selection, tasks: list[Task]) -> tuple[int, int]:
    """Act on tasks concurrently (bounded); returns (changed, skipped: raced elsewhere)."""
    limit = asyncio.Semaphore(CONCURRENCY)
    act: Callable[[str], Any] = store.retry if sel.action == "retry" else store.cancel

    async def one(task: Task) -> bool:
        async with limit:
            try:
                await act(task.id)
            except (WrongState, TaskNotFound):
                return False
            return True

    outcomes = await asyncio.gather(*(one(t) for t in tasks))
    changed = sum(outcomes)
    return changed, len(outcomes) - changed


async def run(store: Store, sel: Selection, budget_s: float) -> dict[str, Any]:
    """Count or act on the selected tasks, newest first, within the limit and budget."""
    deadline = time.monotonic() + budget_s
    matched = changed = skipped = 0
    cursor: Cursor | None = None
    exhausted = False
    if sel.dry_run and sel.task_type is None:
        matched, exhausted = await _exact_count(store, sel), True
    while not exhausted and matched < sel.limit and time.monotonic() < deadline:
        page, cursor = await store.list_tasks(
            limit=min(PAGE, sel.limit - matched),
            cursor=cursor,
            queue=sel.queue,
            accept=sel.accepts,
            max_scan=PAGE * 10,
        )
        matched += len(page)
        exhausted = cursor is None
        if page and not sel.dry_run:
            done, raced = await _apply(store, sel, page)
            changed += done
            skipped += raced
    return {
        "action": sel.action,
        "status": sel.status,
        "task_type": sel.task_type,
        "queue": sel.queue,
        "dry_run": sel.dry_run,
        "matched": matched,
        "changed": changed,
        "skipped": skipped,
        "more": not exhausted,
    }


async def _handle(request: web.Request, action: str) -> web.Response:
    state = request.app[STATE]
    sel = parse(action, await read_json(request))
    budget = state.settings.server.request_timeout_s / 2
    return json_response(await run(state.store, sel, budget))


async def bulk_retry(request: web.Request) -> web.Response:
    """POST /api/tasks/bulk/retry: failed (or cancelled) tasks back to pending."""
    return await _handle(request, "retry")


async def bulk_cancel(request: web.Request) -> web.Response:
    """POST /api/tasks/bulk/cancel: cancel waiting (pending, scheduled, retrying) tasks."""
    return await _handle(request, "cancel")


__all__ = ["STATUSES", "Selection", "bulk_cancel", "bulk_retry", "parse", "run"]
