"""REST handlers for workflows: submit, read, list, cancel, delete.

Each handler validates, calls the store, and shapes the answer; failures are exceptions
that the error middleware turns into JSON (422 naming the field, 404, 409).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from taskd.errors import ValidationError
from taskd.http.api import check_type, read_json
from taskd.http.shapes import json_response
from taskd.http.state import STATE, AppState
from taskd.model import TaskSpec
from taskd.store.flowview import MAX_LIST_LIMIT, WORKFLOW_STATUSES, submitted_view
from taskd.workflow import make_workflow, result_refs

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = MAX_LIST_LIMIT


async def create_workflow(request: web.Request) -> web.Response:
    """POST /api/workflows: 201 with the workflow as written (roots pending, the rest
    waiting), like a task's submit answers the task as created."""
    state = request.app[STATE]
    tasks = state.settings.tasks
    spec = make_workflow(
        await read_json(request),
        default_max_retries=tasks.max_retries,
        default_timeout_s=tasks.timeout_s,
        max_payload_bytes=state.settings.server.max_body_bytes,
    )
    for key, task in spec.tasks.items():
        try:
            await _check_task(state, task.spec)
        except ValidationError as exc:
            message = exc.message.removeprefix(f"{exc.field}: ")
            raise ValidationError(f"tasks.{key}.{exc.field}", message) from None
    view = submitted_view(spec, await state.store.submit_workflow(spec))
    return json_response(view, status=201, headers={"Location": f"/api/workflows/{spec.id}"})


async def _check_task(state: AppState, spec: TaskSpec) -> None:
    """What POST /api/tasks checks of one task: its type can run, its payload fits the
    type's schema (but for payloads with $result references: their final form exists
    only at release)."""
    name = spec.task_type
    checked = name in state.registry and state.registry.checks_payload(name)
    if checked and not result_refs(spec.payload):
        state.registry.check_payload(name, spec.payload)
    await check_type(state, spec)


async def get_workflow(request: web.Request) -> web.Response:
    """GET /api/workflows/{workflow_id}: live statuses, counts and results."""
    view = await request.app[STATE].store.get_workflow(request.match_info["workflow_id"])
    return json_response(view)


async def list_workflows(request: web.Request) -> web.Response:
    """GET /api/workflows?limit=&cursor=&status=: newest first, without their tasks."""
    query = request.query
    status = query.get("status") or None
    if status is not None and status not in WORKFLOW_STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(WORKFLOW_STATUSES)}")
    raw = query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    found, nxt = await request.app[STATE].store.list_workflows(
        limit=int(raw), cursor=query.get("cursor") or None, status=status
    )
    return json_response({"workflows": found, "next_cursor": nxt})


async def cancel_workflow(request: web.Request) -> web.Response:
    """POST /api/workflows/{workflow_id}/cancel: cancel every unfinished task."""
    view = await request.app[STATE].store.cancel_workflow(request.match_info["workflow_id"])
    return json_response(view)


async def delete_workflow(request: web.Request) -> web.Response:
    """DELETE /api/workflows/{workflow_id}: a finished workflow and its tasks (204)."""
    await request.app[STATE].store.delete_workflow(request.match_info["workflow_id"])
    return web.Response(status=204)
