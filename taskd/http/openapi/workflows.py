"""OpenAPI paths and schemas of the workflow routes (see taskd.http.workflows);
:func:`taskd.http.openapi.build_spec` merges them in."""

from __future__ import annotations

from typing import Any, Final

from taskd.http.openapi.common import INT, STR, TIME, obj, ref
from taskd.http.workflows import MAX_LIMIT
from taskd.model import STATUS_NAMES
from taskd.store.flowview import WORKFLOW_STATUSES
from taskd.workflow import MAX_WORKFLOW_TASKS, WORKFLOW_KEY

JSON: Final = "application/json"
_READ: Final = ("401", "403", "503")
_WRITE: Final = ("401", "403", "429", "503")
_ID: Final = {
    "name": "workflow_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "description": "The workflow's id (32 hex digits).",
}
EXAMPLE: Final = {
    "name": "fetch and sum",
    "tasks": [
        {"key": "fetch", "task_type": "api_call", "payload": {"url": "https://example.com/x"}},
        {
            "key": "sum",
            "task_type": "data_processing",
            "depends_on": ["fetch"],
            "payload": {
                "records": {"$result": "fetch.body"},
                "operations": [{"op": "sum", "field": "amount"}],
            },
        },
    ],
}


def _answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/E{code}"} for code in codes}


def _op(op_id: str, summary: str, ok: dict[str, Any], *codes: str, **extra: Any) -> Any:
    return {
        "operationId": op_id,
        "summary": summary,
        "tags": ["workflows"],
        "responses": ok | _errors(*codes),
        **extra,
    }


def workflow_paths() -> dict[str, Any]:
    """The workflow routes."""
    one = {"200": _answer(ref("Workflow"), "The workflow with live task statuses")}
    listing = [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
            "description": "Page size.",
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "schema": STR,
            "description": "next_cursor of the previous page.",
        },
        {
            "name": "status",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["", *WORKFLOW_STATUSES]},
            "description": "Only workflows in this status (empty: any).",
        },
    ]
    page = obj(
        {
            "workflows": {"type": "array", "items": ref("Workflow")},
            "next_cursor": {"type": ["string", "null"]},
        },
        "workflows",
        "next_cursor",
    )
    submit = {"required": True, "content": {JSON: {"schema": ref("WorkflowSubmit")}}}
    return {
        "/api/workflows": {
            "get": _op(
                "listWorkflows",
                "List workflows, newest first",
                {"200": _answer(page, "A page")},
                "422",
                *_READ,
                parameters=listing,
            ),
            "post": _op(
                "submitWorkflow",
                "Submit a workflow (a DAG of tasks)",
                {"201": _answer(ref("Workflow"), "Created: roots pending, the rest waiting")},
                "400",
                "413",
                "422",
                *_WRITE,
                requestBody=submit,
            ),
        },
        "/api/workflows/{workflow_id}": {
            "parameters": [_ID],
            "get": _op("getWorkflow", "One workflow", one, "404", *_READ),
            "delete": _op(
                "deleteWorkflow",
                "Delete a finished workflow and its tasks",
                {"204": {"description": "Deleted"}},
                "404",
                "409",
                *_WRITE,
            ),
        },
        "/api/workflows/{workflow_id}/cancel": {
            "parameters": [_ID],
            "post": _op(
                "cancelWorkflow", "Cancel every unfinished task", one, "404", "409", *_WRITE
            ),
        },
    }


def workflow_schemas() -> dict[str, Any]:
    """Workflow, WorkflowSubmit."""
    counts = obj(dict.fromkeys((*STATUS_NAMES, "total"), INT), *STATUS_NAMES, "total")
    node = obj(
        {
            "id": STR,
            "name": STR,
            "task_type": STR,
            "queue": STR,
            "status": {"type": "string", "enum": list(STATUS_NAMES)},
            "progress": INT,
            "depends_on": {"type": "array", "items": STR},
            "result": {},
            "error": {"type": ["string", "null"]},
        },
        "id",
        "status",
        "depends_on",
    )
    workflow = obj(
        {
            "id": STR,
            "name": STR,
            "status": {"type": "string", "enum": list(WORKFLOW_STATUSES)},
            "created_at": TIME,
            "counts": counts,
            "tasks": {"type": "object", "additionalProperties": node},
        },
        "id",
        "name",
        "status",
        "counts",
    )
    task = {
        "type": "object",
        "required": ["key", "task_type"],
        "properties": {
            "key": {"type": "string", "pattern": WORKFLOW_KEY.pattern},
            "depends_on": {"type": "array", "items": STR, "default": []},
            "run_on_failure": {"type": "boolean", "default": False},
        },
        "description": "Every field of a task submit (POST /api/tasks) plus key, depends_on "
        'and run_on_failure. Any payload value {"$result": "<key>[.path]"} is replaced by '
        "that dependency's result when the task starts.",
    }
    submit = obj(
        {
            "name": STR | {"minLength": 1, "maxLength": 200},
            "tasks": {
                "type": "array",
                "items": task,
                "minItems": 1,
                "maxItems": MAX_WORKFLOW_TASKS,
            },
        },
        "tasks",
        example=EXAMPLE,
    )
    return {"Workflow": workflow, "WorkflowSubmit": submit}
