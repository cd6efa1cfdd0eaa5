"""The OpenAPI 3.1 description of every endpoint, built once per app from the registry.

It is what ``/api/openapi.json`` serves, what ``/docs`` renders, and what the property
test fuzzes the real server against, so it has to be true: task types are the registered
ones, limits are the ones the handlers enforce, and every status a route can answer with
is listed.
"""

from __future__ import annotations

from typing import Any, Final

from taskd.http.schemas import component_schemas, ref
from taskd.model import (
    QUEUE_NAME,
    STATUS_NAMES,
)
from taskd.registry import Registry

JSON: Final = "application/json"
_STATUS_LIST = f"^(|({'|'.join(STATUS_NAMES)})(,({'|'.join(STATUS_NAMES)}))*)$"

WS_DESCRIPTION: Final = """\
Connect to `ws://<host>/ws` (optionally `?since=<last_event_id>`; with auth, an
`Authorization: Bearer` header, `?token=`, or `{"type": "auth", "token": "..."}` as the
first message). The server sends JSON text messages:

* `{"type": "snapshot", "reason", "stats", "tasks": [newest 100], "last_event_id"}` first;
* `{"type": "events", "events": [{"event_id", "queue", "kind", "ts", "task"}],
  "last_event_id"}` batches, at most about ten per second, latest state per task;
* `{"type": "resumed", "replayed", "last_event_id"}` after replaying history for `since`
  (too old: a fresh snapshot with `"reason": "since_too_old"` instead);
* `{"type": "stats", "stats"}` when the overview changes, at most about once a second.

A client that falls behind is closed with 1013 and may reconnect with `since`; a failed
first-message authentication closes with 1008.
"""


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str, *headers: str) -> dict[str, Any]:
    response = _json(ref("Error"), description)
    if headers:
        response["headers"] = {h: {"schema": {"type": "string"}, "required": True} for h in headers}
    return response


ERRORS: Final = {
    "400": _error("Malformed JSON body"),
    "401": _error("Missing or invalid bearer token", "WWW-Authenticate"),
    "403": _error("The token may only read, or the browser origin is not allowed"),
    "404": _error("No such task (or it expired)"),
    "409": _error("The task's status does not allow this"),
    "413": _error("Body larger than server.max_body_bytes"),
    "422": _error("A value is invalid; details.field names it"),
    "429": _error("Too many writes from this client", "Retry-After"),
    "503": _error("Redis is unavailable; retry later", "Retry-After"),
}


def _responses(ok: dict[str, Any], *errors: str) -> dict[str, Any]:
    return ok | {code: {"$ref": f"#/components/responses/E{code}"} for code in errors}


def _operation(
    op_id: str,
    summary: str,
    tag: str,
    ok: dict[str, Any],
    errors: tuple[str, ...],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "responses": _responses(ok, *errors),
        **extra,
    }


_READ = ("401", "403", "503")
_WRITE = ("401", "403", "429", "503")
_BODY = ("400", "413", "422")
_TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "description": "The task's id (32 hex digits).",
}


def _list_parameters() -> list[dict[str, Any]]:
    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
        }

    return [
        query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            "Page size.",
        ),
        query("cursor", {"type": "string"}, "next_cursor of the previous page."),
        query(
            "status",
            {"type": "string", "pattern": _STATUS_LIST},
            "One status, or several separated by commas (empty: any).",
        ),
        query("task_type", {"type": "string"}, "Only tasks of this type (empty: any)."),
        query(
            "queue",
            {"type": "string", "pattern": f"^$|{QUEUE_NAME.pattern}"},
            "Only tasks of this queue (empty: every queue).",
        ),
        query(
            "q",
            {"type": "string", "maxLength": 200},
            "Case-insensitive substring of the name, or a prefix of the id.",
        ),
    ]


def _task_paths() -> dict[str, Any]:
    task = _json(ref("Task"), "The task")
    create_body = {"required": True, "content": {JSON: {"schema": ref("TaskCreate")}}}
    batch_body = {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "anyOf": [
                        {
                            "type": "object",
                            "required": ["tasks"],
                            "additionalProperties": False,
                            "properties": {
                                "tasks": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 1000,
                                    "items": ref("TaskCreate"),
                                }
                            },
                        },
                        {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 1000,
                            "items": ref("TaskCreate"),
                        },
                    ]
                }
            }
        },
    }
    created = task | {"headers": {"Location": {"required": True, "schema": {"type": "string"}}}}
    idempotency = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": "Same as unique_key in the body.",
    }
    return {
        "/api/tasks": {
            "get": _operation(
                "listTasks",
                "List tasks, newest first",
                "tasks",
                {"200": _json(ref("TaskList"), "One page")},
                ("422", *_READ),
                parameters=_list_parameters(),
            ),
            "post": _operation(
                "createTask",
                "Submit a task",
                "tasks",
                {
                    "201": created | {"description": "Created"},
                    "200": created | {"description": "Its unique key names a live task: that one"},
                },
                (*_BODY, *_WRITE),
                requestBody=create_body,
                parameters=[idempotency],
            ),
        },
        "/api/tasks/batch": {
            "post": _operation(
                "createTasks",
                "Submit up to 1,000 tasks at once (all valid or none submitted)",
                "tasks",
                {
                    "201": _json(ref("BatchResult"), "Created"),
                    "200": _json(ref("BatchResult"), "All of them existed already"),
                },
                (*_BODY, *_WRITE),
                requestBody=batch_body,
            )
        },
        "/api/tasks/stats/overview": {
            "get": _operation(
                "statsOverview",
                "Counts per status, throughput and depth per priority",
                "tasks",
                {"200": _json(ref("Overview"), "The overview")},
                _READ,
            )
        },
        "/api/tasks/{task_id}": {
            "parameters": [_TASK_ID],
            "get": _operation("getTask", "One task", "tasks", {"200": task}, ("404", *_READ)),
            "delete": _operation(
                "deleteTask",
                "Delete a finished task",
                "tasks",
                {"204": {"description": "Deleted"}},
                ("404", "409", *_WRITE),
            ),
        },
        "/api/tasks/{task_id}/cancel": {
            "parameters": [_TASK_ID],
            "post": _operation(
                "cancelTask",
                "Cancel a waiting task, or ask a running one to stop",
                "tasks",
                {
                    "200": task | {"description": "Cancelled"},
                    "202": task | {"description": "Running: the worker will stop it"},
                },
                ("404", "409", *_WRITE),
            ),
        },
        "/api/tasks/{task_id}/retry": {
            "parameters": [_TASK_ID],
            "post": _operation(
                "retryTask",
                "Send a failed or cancelled task back to pending",
                "tasks",
                {"200": task},
                ("404", "409", *_WRITE),
            ),
        },
    }


def _system_paths() -> dict[str, Any]:
    def text(media: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {media: {"schema": {"type": "string"}}}}

    health = _json(ref("Health"), "Healthy")
    return {
        "/api/workers": {
            "get": _operation(
                "listWorkers",
                "Live worker consumers",
                "system",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["workers"],
                            "properties": {"workers": {"type": "array", "items": ref("Worker")}},
                        },
                        "Workers",
                    )
                },
                _READ,
            )
        },
        "/api/task-types": {
            "get": _operation(
                "listTaskTypes",
                "Registered task types",
                "system",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["task_types"],
                            "properties": {
                                "task_types": {"type": "array", "items": ref("TaskType")}
                            },
                        },
                        "Types",
                    )
                },
                _READ,
            )
        },
        "/api/openapi.json": {
            "get": _operation(
                "openapi",
                "This description",
                "system",
                {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                ("401", "403"),
            )
        },
        "/healthz": {
            "get": _operation("healthz", "The process is alive", "system", {"200": health}, ())
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "Redis reachable, workers and event relay running",
                "system",
                {
                    "200": health,
                    "503": _json(ref("Health"), "Not ready")
                    | {"headers": {"Retry-After": {"schema": {"type": "string"}}}},
                },
                (),
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics",
                "system",
                {"200": text("text/plain", "Text format")},
                ("503",),
            )
        },
        "/docs": {
            "get": _operation(
                "docs",
                "This reference as HTML",
                "system",
                {"200": text("text/html", "The page")},
                (),
            )
        },
        "/ws": {
            "get": _operation(
                "events",
                "WebSocket event stream (see the description above)",
                "events",
                {
                    "101": {"description": "Switching protocols"},
                    "400": _error("Not a WebSocket upgrade request"),
                },
                ("401", "403", "422"),
                parameters=[
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "last_event_id (or an event id) to resume after.",
                    },
                    {
                        "name": "token",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Bearer token.",
                    },
                ],
            )
        },
    }


def build_spec(registry: Registry, *, auth_required: bool, version: str) -> dict[str, Any]:
    """The whole description; ``auth_required`` adds the bearer requirement."""
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "taskd",
            "version": version,
            "description": "A real-time task queue on Redis Streams. Errors are always "
            '`{"error": {"code", "message", "details"}}`. Paths also answer '
            "with a trailing slash.\n\n## WebSocket `/ws`\n\n" + WS_DESCRIPTION,
        },
        "tags": [{"name": "tasks"}, {"name": "events"}, {"name": "system"}],
        "paths": _task_paths() | _system_paths(),
        "components": {
            "schemas": component_schemas(registry),
            "responses": {f"E{code}": response for code, response in ERRORS.items()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if auth_required:
        for path, item in spec["paths"].items():
            if path.startswith("/api") or path == "/ws":
                for method, op in item.items():
                    if method != "parameters":
                        op["security"] = [{"bearer": []}]
    return spec
