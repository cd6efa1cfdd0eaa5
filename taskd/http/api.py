"""REST handlers for tasks: submit (one or a batch), read, list, cancel, retry, delete.

Handlers parse and validate, call the store once, and shape the answer; every failure is
an exception that the error middleware turns into JSON.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import orjson
from aiohttp import web

from taskd.engine.relay import overview
from taskd.errors import ValidationError
from taskd.http.middleware import BadRequest, KeyConflict
from taskd.http.shapes import json_response, task_rows
from taskd.http.state import SERVICES, STATE, AppState
from taskd.intake import checked_spec
from taskd.model import (
    DEFAULT_PRIORITY,
    MAX_UNIQUE_KEY_LEN,
    QUEUE_NAME,
    SUBMIT_FIELDS,
    TASK_TYPE_NAME,
    Task,
    TaskSpec,
    int_from_text,
    parse_statuses,
)
from taskd.paging import Cursor

MAX_BATCH: Final = 1000
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_QUERY_LEN: Final = 200


async def read_json(request: web.Request) -> Any:
    """The body as JSON; malformed or empty is a 400."""
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


def spec_from(state: AppState, item: Any, idempotency_key: str | None = None) -> TaskSpec:
    """Validate one submitted object into a TaskSpec; ValidationError names the field."""
    if not isinstance(item, dict):
        raise ValidationError("body", "must be a JSON object")
    unknown = sorted(set(item) - SUBMIT_FIELDS)
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    unique_key = item.get("unique_key")
    if idempotency_key is not None:
        if unique_key is not None and unique_key != idempotency_key:
            raise KeyConflict(
                "the Idempotency-Key header and unique_key name different keys; send one, "
                "or the same in both"
            )
        unique_key = idempotency_key
    return checked_spec(
        state.registry,
        state.settings,
        item.get("task_type"),
        item.get("payload"),
        name=item.get("name"),
        priority=item.get("priority", DEFAULT_PRIORITY),
        queue=item.get("queue", "default"),
        delay_s=item.get("delay_s"),
        run_at=item.get("run_at"),
        max_retries=item.get("max_retries"),
        timeout_s=item.get("timeout_s"),
        unique_key=unique_key,
    )


async def check_type(state: AppState, spec: TaskSpec) -> None:
    """Refuse a type nothing can run: not built in, not ours, not a live worker's."""
    if spec.task_type not in state.known_types.local:
        await state.known_types.check(spec.task_type, spec.queue)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= MAX_UNIQUE_KEY_LEN:
        raise ValidationError("Idempotency-Key", f"must be 1-{MAX_UNIQUE_KEY_LEN} characters")
    return key


async def create_task(request: web.Request) -> web.Response:
    """POST /api/tasks: 201 with the task, or 200 with the existing one for a used key."""
    state = request.app[STATE]
    spec = spec_from(state, await read_json(request), _idempotency_key(request))
    await check_type(state, spec)
    ((task, created),) = await state.store.submit([spec])
    if created:
        request.app[SERVICES].metrics.submitted(task.task_type)
    return json_response(
        task.to_api(),
        status=201 if created else 200,
        headers={"Location": f"/api/tasks/{task.id}"},
    )


async def create_batch(request: web.Request) -> web.Response:
    """POST /api/tasks/batch: all valid or none submitted; one Redis round trip."""
    state = request.app[STATE]
    body = await read_json(request)
    items = body.get("tasks") if isinstance(body, dict) and set(body) == {"tasks"} else body
    if not isinstance(items, list):
        raise ValidationError("tasks", 'send {"tasks": [...]} or a JSON array of tasks')
    if not 1 <= len(items) <= MAX_BATCH:
        raise ValidationError("tasks", f"must hold 1-{MAX_BATCH} tasks, got {len(items)}")
    specs: list[TaskSpec] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            spec = spec_from(state, item)
            await check_type(state, spec)
            specs.append(spec)
        except ValidationError as exc:
            problems.append(
                {
                    "index": index,
                    "field": exc.field,
                    "message": exc.message.removeprefix(f"{exc.field}: "),
                }
            )
    if problems:
        error = ValidationError(
            "tasks", f"{len(problems)} of {len(items)} tasks are invalid; none was submitted"
        )
        error.details["errors"] = problems[:100]
        raise error
    results = await state.store.submit(specs)
    metrics = request.app[SERVICES].metrics
    per_type = Counter(task.task_type for task, created in results if created)
    for task_type, count in per_type.items():
        metrics.submitted(task_type, count)
    created_count = per_type.total()
    return json_response(
        {"tasks": [task.to_api() for task, _ in results], "created": created_count},
        status=201 if created_count else 200,
    )


async def get_task(request: web.Request) -> web.Response:
    """GET /api/tasks/{task_id}."""
    task = await request.app[STATE].store.get(request.match_info["task_id"])
    return json_response(task.to_api())


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    return int_from_text("limit", raw, 1, MAX_LIMIT)


def _filter(query: Any) -> Callable[[Task], bool] | None:
    """The accept function for ?status=&task_type=&q= (None when nothing filters)."""
    checks: list[Callable[[Task], bool]] = []
    if status := query.get("status"):
        statuses = parse_statuses(status)
        checks.append(lambda t: t.status in statuses)
    if task_type := query.get("task_type"):
        if not TASK_TYPE_NAME.fullmatch(task_type):  # no task has it: a typo, said so
            raise ValidationError("task_type", "must be 1-100 characters of letters, digits, _.-:")
        checks.append(lambda t: t.task_type == task_type)
    if (text := query.get("q")) is not None and text != "":
        if len(text) > MAX_QUERY_LEN:
            raise ValidationError("q", f"at most {MAX_QUERY_LEN} characters")
        needle = text.lower()
        checks.append(lambda t: needle in t.name.lower() or t.id.startswith(needle))
    if not checks:
        return None
    return lambda t: all(check(t) for check in checks)


async def list_tasks(request: web.Request) -> web.Response:
    """GET /api/tasks: newest first, filtered, paged with an opaque cursor."""
    query = request.query
    limit = _limit(query.get("limit"))
    raw_cursor = query.get("cursor")
    cursor = Cursor.decode(raw_cursor) if raw_cursor else None
    queue = query.get("queue") or None
    if queue is not None and not QUEUE_NAME.fullmatch(queue):
        raise ValidationError("queue", "must be 1-64 characters of letters, digits, _.-")
    accept = _filter(query)
    tasks, nxt = await request.app[STATE].store.list_tasks(
        limit=limit, cursor=cursor, queue=queue, accept=accept
    )
    return json_response(
        {
            "tasks": task_rows(tasks),
            "next_cursor": nxt.encode() if nxt is not None else None,
        }
    )


async def stats_overview(request: web.Request) -> web.Response:
    """GET /api/tasks/stats/overview: counts, throughput, depth per priority; O(queues)."""
    state = request.app[STATE]
    return json_response(await overview(state.store, state.relay.throughput))


async def cancel_task(request: web.Request) -> web.Response:
    """POST /api/tasks/{task_id}/cancel: 200 cancelled, or 202 while a running one stops."""
    store = request.app[STATE].store
    task_id = request.match_info["task_id"]
    outcome = await store.cancel(task_id)
    task = await store.get(task_id)
    return json_response(task.to_api(), status=200 if outcome == "cancelled" else 202)


async def retry_task(request: web.Request) -> web.Response:
    """POST /api/tasks/{task_id}/retry: a failed or cancelled task back to pending."""
    task = await request.app[STATE].store.retry(request.match_info["task_id"])
    return json_response(task.to_api())


async def delete_task(request: web.Request) -> web.Response:
    """DELETE /api/tasks/{task_id}: remove a finished task now (204)."""
    await request.app[STATE].store.delete(request.match_info["task_id"])
    return web.Response(status=204)
