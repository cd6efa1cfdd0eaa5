"""OpenAPI paths and schemas of the workflow routes (see taskd.http.workflows);
:func:`taskd.http.openapi.build_spec` merges them in."""

from __future__ import annotations

import copy
import re
from typing import Any, Final

from taskd.engine.registry import Registry, TaskType
from taskd.http.openapi.common import INT, STR, TIME, obj, ref
from taskd.http.openapi.schemas import submit_variant
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
            "schema": {"type": "string", "pattern": "^([0-9]+:[0-9a-f]*)?$"},
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
                "409",
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


def _task_name(task_type: str) -> str:
    return "WorkflowTask_" + re.sub(r"[^A-Za-z0-9._-]", "_", task_type)


def _task_variant(registry: Registry, task_type: TaskType) -> dict[str, Any]:
    """A task type's submit schema plus key, depends_on and run_on_failure. Rules a JSON
    Schema cannot state are checked by the server (422 naming the place): depends_on
    names keys of the same workflow, no cycle, keys unique, and a payload's
    {"$result": "<key>[.path]"} names a key of the task's own depends_on (it is replaced
    by that dependency's result when the task starts)."""
    schema = copy.deepcopy(submit_variant(registry, task_type))
    schema["properties"] |= {
        "key": {"type": "string", "pattern": WORKFLOW_KEY.pattern},
        "depends_on": {"type": "array", "items": STR, "default": []},
        "run_on_failure": {"type": "boolean", "default": False},
    }
    schema["required"] = [*schema["required"], "key"]
    schema["example"] = {"key": "first"} | schema.get("example", {})
    return schema


def workflow_schemas(registry: Registry) -> dict[str, Any]:
    """Workflow, WorkflowSubmit and one WorkflowTask_<type> per task type."""
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
    task = {"oneOf": [ref(_task_name(t.name)) for t in registry]}
    submit = obj(
        {
            "name": STR | {"minLength": 1, "maxLength": 200},
            "tasks": {
                "type": "array",
                "items": task,
                "minItems": 1,
                # (No maxItems: a longer array than the limit only fits the body size
                # limit for tiny tasks; the server answers 422 past it, or 413.)
                "description": f"1 to {MAX_WORKFLOW_TASKS} tasks.",
            },
        },
        "tasks",
        additionalProperties=False,
        example=EXAMPLE,
    )
    variants = {_task_name(t.name): _task_variant(registry, t) for t in registry}
    return {"Workflow": workflow, "WorkflowSubmit": submit} | variants
