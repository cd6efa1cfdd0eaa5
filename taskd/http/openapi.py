"""The OpenAPI 3.1 description of every endpoint, built once per app from the registry.

It is what ``/api/openapi.json`` serves, what ``/docs`` renders, and what the property
test fuzzes the real server against, so it has to be true: task types are the registered
ones, limits are the ones the handlers enforce, and every status a route can answer with
is listed.
"""

from __future__ import annotations

from typing import Any, Final

from taskd.engine.registry import Registry
from taskd.http import openapi_dashboard, openapi_history, openapi_workflows, queues
from taskd.http.schemas import component_schemas, ref
from taskd.model import (
    QUEUE_NAME,
    STATUS_NAMES,
)

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
    "404": _error("No such task (or it expired), or no such queue"),
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


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


def _envelope(key: str, item: str) -> dict[str, Any]:
    """An object holding one array of ``item``s under ``key``."""
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": ref(item)}},
    }


def _list_parameters() -> list[dict[str, Any]]:
    limit = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    queue = {"type": "string", "pattern": f"^$|{QUEUE_NAME.pattern}"}
    return [
        _param("limit", "query", limit, "Page size."),
        _param("cursor", "query", {"type": "string"}, "next_cursor of the previous page."),
        _param(
            "status",
            "query",
            {"type": "string", "pattern": _STATUS_LIST},
            "One status, or several separated by commas (empty: any).",
        ),
        _param("task_type", "query", {"type": "string"}, "Only this type (empty: any)."),
        _param("queue", "query", queue, "Only tasks of this queue (empty: every queue)."),
        _param(
            "q",
            "query",
            {"type": "string", "maxLength": 200},
            "Case-insensitive substring of the name, or a prefix of the id.",
        ),
    ]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _tasks_path() -> dict[str, Any]:
    """/api/tasks: list (GET) and submit one (POST)."""
    located = _json(ref("Task"), "") | {
        "headers": {"Location": {"required": True, "schema": {"type": "string"}}}
    }
    created = {
        "201": located | {"description": "Created"},
        "200": located | {"description": "Its unique key names a live task: that one"},
    }
    key = {"type": "string", "minLength": 1, "maxLength": 200}
    idempotency = _param("Idempotency-Key", "header", key, "Same as unique_key in the body.")
    listed = {"200": _json(ref("TaskList"), "One page")}
    return {
        "get": _operation(
            "listTasks",
            "List tasks, newest first",
            "tasks",
            listed,
            ("422", *_READ),
            parameters=_list_parameters(),
        ),
        "post": _operation(
            "createTask",
            "Submit a task",
            "tasks",
            created,
            (*_BODY, *_WRITE),
            requestBody=_body(ref("TaskCreate")),
            parameters=[idempotency],
        ),
    }


def _collection_paths() -> dict[str, Any]:
    """Submitting and listing: /api/tasks, /api/tasks/batch, the overview."""
    many = {"type": "array", "minItems": 1, "maxItems": 1000, "items": ref("TaskCreate")}
    wrapped = {
        "type": "object",
        "required": ["tasks"],
        "additionalProperties": False,
        "properties": {"tasks": many},
    }
    batch = {
        "201": _json(ref("BatchResult"), "Created"),
        "200": _json(ref("BatchResult"), "All of them existed already"),
    }
    overview = {"200": _json(ref("Overview"), "The overview")}
    return {
        "/api/tasks": _tasks_path(),
        "/api/tasks/batch": {
            "post": _operation(
                "createTasks",
                "Submit up to 1,000 tasks at once (all valid or none submitted)",
                "tasks",
                batch,
                (*_BODY, *_WRITE),
                requestBody=_body({"anyOf": [wrapped, many]}),
            )
        },
        "/api/tasks/stats/overview": {
            "get": _operation(
                "statsOverview",
                "Counts per status, throughput and depth per priority",
                "tasks",
                overview,
                _READ,
            )
        },
    }


def _item_paths() -> dict[str, Any]:
    """One task: read, delete, cancel, retry."""
    task = _json(ref("Task"), "The task")
    conflicts = ("404", "409", *_WRITE)
    cancelled = {
        "200": task | {"description": "Cancelled"},
        "202": task | {"description": "Running: the worker will stop it"},
    }
    return {
        "/api/tasks/{task_id}": {
            "parameters": [_TASK_ID],
            "get": _operation("getTask", "One task", "tasks", {"200": task}, ("404", *_READ)),
            "delete": _operation(
                "deleteTask",
                "Delete a finished task",
                "tasks",
                {"204": {"description": "Deleted"}},
                conflicts,
            ),
        },
        "/api/tasks/{task_id}/cancel": {
            "parameters": [_TASK_ID],
            "post": _operation(
                "cancelTask",
                "Cancel a waiting task, or ask a running one to stop",
                "tasks",
                cancelled,
                conflicts,
            ),
        },
        "/api/tasks/{task_id}/retry": {
            "parameters": [_TASK_ID],
            "post": _operation(
                "retryTask",
                "Send a failed or cancelled task back to pending",
                "tasks",
                {"200": task},
                conflicts,
            ),
        },
    }


def _system_paths() -> dict[str, Any]:
    """Workers, task types and this description."""
    return {
        "/api/workers": {
            "get": _operation(
                "listWorkers",
                "Live worker consumers",
                "system",
                {"200": _json(_envelope("workers", "Worker"), "Workers")},
                _READ,
            )
        },
        "/api/task-types": {
            "get": _operation(
                "listTaskTypes",
                "Registered task types",
                "system",
                {"200": _json(_envelope("task_types", "TaskType"), "Types")},
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
    }


def _queue_paths() -> dict[str, Any]:
    """Queues: list, one, and the controls every daemon obeys (pause, resume, purge)."""
    name = _param("name", "path", {"type": "string", "pattern": QUEUE_NAME.pattern}, "Queue.")
    one = {"200": _json(ref("Queue"), "The queue")}
    control = ("404", "422", *_WRITE)

    def post(op_id: str, summary: str, ok: dict[str, Any], *errors: str, **extra: Any) -> Any:
        op = _operation(op_id, summary, "queues", ok, (*errors, *control), **extra)
        return {"parameters": [name], "post": op}

    purge = post(
        "purgeQueue",
        "Cancel every waiting task of the queue (running ones finish)",
        {"200": _json(ref("Purged"), 'Cancelled; needs {"confirm": true}')},
        "400",
        "413",
        requestBody=_body(ref("PurgeRequest")),
    )
    return {
        "/api/queues": {
            "get": _operation(
                "listQueues",
                "Every queue: counts, ready depth, throughput, paused, serving daemons",
                "queues",
                {"200": _json(ref("QueueList"), "Queues")},
                _READ,
            )
        },
        "/api/queues/{name}": {
            "parameters": [name],
            "get": _operation("getQueue", "One queue", "queues", one, ("404", "422", *_READ)),
        },
        "/api/queues/{name}/pause": post(
            "pauseQueue", "Stop every daemon from starting the queue's tasks", one
        ),
        "/api/queues/{name}/resume": post("resumeQueue", "Start the queue's tasks again", one),
        "/api/queues/{name}/purge": purge,
    }


def _websocket_path() -> dict[str, Any]:
    ws_params = [
        _param(
            "since", "query", {"type": "string"}, "last_event_id (or an event id) to resume after."
        ),
        _param("token", "query", {"type": "string"}, "Bearer token."),
    ]
    responses = {
        "101": {"description": "Switching protocols"},
        "400": _error("Not a WebSocket upgrade request"),
    }
    return {
        "get": _operation(
            "events",
            "WebSocket event stream (see the description above)",
            "events",
            responses,
            ("401", "403", "422"),
            parameters=ws_params,
        )
    }


def _probe_paths() -> dict[str, Any]:
    """Health, readiness, metrics, docs and the WebSocket."""
    health = _json(ref("Health"), "Healthy")
    not_ready = _json(ref("Health"), "Not ready") | {
        "headers": {"Retry-After": {"schema": {"type": "string"}}}
    }

    def text(media: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {media: {"schema": {"type": "string"}}}}

    return {
        "/healthz": {
            "get": _operation("healthz", "The process is alive", "system", {"200": health}, ())
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "Redis reachable, workers and event relay running",
                "system",
                {"200": health, "503": not_ready},
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
        "/ws": _websocket_path(),
    }


def build_spec(registry: Registry, *, auth_required: bool, version: str) -> dict[str, Any]:
    """The whole description; ``auth_required`` adds the bearer requirement."""
    description = (
        "A real-time task queue on Redis Streams. Errors are always "
        '`{"error": {"code", "message", "details"}}`. Paths also answer with a trailing '
        "slash.\n\n## WebSocket `/ws`\n\n" + WS_DESCRIPTION
    )
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "taskd", "version": version, "description": description},
        "tags": [{"name": n} for n in ("tasks", "workflows", "queues", "events", "system")],
        "paths": _collection_paths()
        | _item_paths()
        | _queue_paths()
        | _system_paths()
        | _probe_paths()
        | openapi_dashboard.paths()
        | openapi_history.paths()
        | openapi_workflows.paths(),
        "components": {
            "schemas": component_schemas(registry)
            | queues.schemas()
            | openapi_dashboard.schemas()
            | openapi_history.schemas()
            | openapi_workflows.schemas(),
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
