"""The OpenAPI 3.1 description of every endpoint, built once per app from the registry.

It is what ``/api/openapi.json`` serves, what ``/docs`` renders, and what the property
test fuzzes the real server against, so it has to be true: task types are the registered
ones, limits are the ones the handlers enforce, and every status a route can answer with
is listed.
"""

from __future__ import annotations

from typing import Any

from taskd.http.openapi.common import (
    BODY,
    READ,
    TASK_ID,
    WRITE,
    json_body,
    operation,
    param,
    ref,
    request_body,
)
from taskd.model import (
    QUEUE_NAME,
    STATUS_NAMES,
    TASK_TYPE_NAME,
)
from taskd.paging import PATTERN as CURSOR_PATTERN

_STATUS_LIST = f"^(|({'|'.join(STATUS_NAMES)})(,({'|'.join(STATUS_NAMES)}))*)$"


def _operation(
    op_id: str, summary: str, tag: str, ok: dict[str, Any], errors: tuple[str, ...], **extra: Any
) -> dict[str, Any]:
    return operation(op_id, summary, tag, ok, *errors, **extra)


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
        param("limit", "query", limit, "Page size."),
        param(
            "cursor",
            "query",
            {"type": "string", "pattern": f"^$|{CURSOR_PATTERN}"},
            "next_cursor of the previous page (empty: the first page).",
        ),
        param(
            "status",
            "query",
            {"type": "string", "pattern": _STATUS_LIST},
            "One status, or several separated by commas (empty: any).",
        ),
        param(
            "task_type",
            "query",
            {"type": "string", "pattern": f"^$|{TASK_TYPE_NAME.pattern}"},
            "Only this type (empty: any).",
        ),
        param("queue", "query", queue, "Only tasks of this queue (empty: every queue)."),
        param(
            "q",
            "query",
            {"type": "string", "maxLength": 200},
            "Case-insensitive substring of the name, or a prefix of the id.",
        ),
    ]


def _tasks_path() -> dict[str, Any]:
    """/api/tasks: list (GET) and submit one (POST)."""
    located = json_body(ref("Task"), "") | {
        "headers": {"Location": {"required": True, "schema": {"type": "string"}}}
    }
    created = {
        "201": located | {"description": "Created"},
        "200": located | {"description": "Its unique key names a kept task (any status): that one"},
        "409": json_body(
            ref("Error"),
            "The Idempotency-Key header and the body's unique_key differ (code "
            "idempotency_conflict); nothing was submitted",
        ),
    }
    key = {"type": "string", "minLength": 1, "maxLength": 200}
    idempotency = param(
        "Idempotency-Key",
        "header",
        key,
        "The same as unique_key in the body. Send either, or both with the same value: "
        "different values are refused with 409.",
    )
    listed = {"200": json_body(ref("TaskList"), "One page")}
    return {
        "get": _operation(
            "listTasks",
            "List tasks, newest first",
            "tasks",
            listed,
            ("422", *READ),
            parameters=_list_parameters(),
        ),
        "post": _operation(
            "createTask",
            "Submit a task",
            "tasks",
            created,
            (*BODY, *WRITE),
            requestBody=request_body(ref("TaskCreate")),
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
        "201": json_body(ref("BatchResult"), "Created"),
        "200": json_body(ref("BatchResult"), "All of them existed already"),
    }
    overview = {"200": json_body(ref("Overview"), "The overview")}
    return {
        "/api/tasks": _tasks_path(),
        "/api/tasks/batch": {
            "post": _operation(
                "createTasks",
                "Submit up to 1,000 tasks at once (all valid or none submitted)",
                "tasks",
                batch,
                (*BODY, *WRITE),
                requestBody=request_body({"anyOf": [wrapped, many]}),
            )
        },
        "/api/tasks/stats/overview": {
            "get": _operation(
                "statsOverview",
                "Counts per status, throughput and depth per priority",
                "tasks",
                overview,
                READ,
            )
        },
    }


def _item_paths() -> dict[str, Any]:
    """One task: read, delete, cancel, retry."""
    task = json_body(ref("Task"), "The task")
    conflicts = ("404", "409", *WRITE)
    cancelled = {
        "200": task | {"description": "Cancelled"},
        "202": task | {"description": "Running: the worker will stop it"},
    }
    return {
        "/api/tasks/{task_id}": {
            "parameters": [TASK_ID],
            "get": _operation("getTask", "One task", "tasks", {"200": task}, ("404", *READ)),
            "delete": _operation(
                "deleteTask",
                "Delete a finished task",
                "tasks",
                {"204": {"description": "Deleted"}},
                conflicts,
            ),
        },
        "/api/tasks/{task_id}/cancel": {
            "parameters": [TASK_ID],
            "post": _operation(
                "cancelTask",
                "Cancel a waiting task, or ask a running one to stop",
                "tasks",
                cancelled,
                conflicts,
            ),
        },
        "/api/tasks/{task_id}/retry": {
            "parameters": [TASK_ID],
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
                {"200": json_body(_envelope("workers", "Worker"), "Workers")},
                READ,
            )
        },
        "/api/task-types": {
            "get": _operation(
                "listTaskTypes",
                "Registered task types",
                "system",
                {"200": json_body(_envelope("task_types", "TaskType"), "Types")},
                READ,
            )
        },
        "/api/openapi.json": {
            "get": _operation(
                "openapi",
                "This description",
                "system",
                {"200": json_body({"type": "object"}, "OpenAPI 3.1")},
                ("401", "403"),
            )
        },
    }


def _queue_paths() -> dict[str, Any]:
    """Queues: list, one, and the controls every daemon obeys (pause, resume, purge)."""
    name = param("name", "path", {"type": "string", "pattern": QUEUE_NAME.pattern}, "Queue.")
    one = {"200": json_body(ref("Queue"), "The queue")}
    control = ("404", "422", *WRITE)

    def post(op_id: str, summary: str, ok: dict[str, Any], *errors: str, **extra: Any) -> Any:
        op = _operation(op_id, summary, "queues", ok, (*errors, *control), **extra)
        return {"parameters": [name], "post": op}

    purge = post(
        "purgeQueue",
        "Cancel every waiting task of the queue (running ones finish)",
        {"200": json_body(ref("Purged"), 'Cancelled; needs {"confirm": true}')},
        "400",
        "413",
        requestBody=request_body(ref("PurgeRequest")),
    )
    return {
        "/api/queues": {
            "get": _operation(
                "listQueues",
                "Every queue: counts, ready depth, throughput, paused, serving daemons",
                "queues",
                {"200": json_body(ref("QueueList"), "Queues")},
                READ,
            )
        },
        "/api/queues/{name}": {
            "parameters": [name],
            "get": _operation("getQueue", "One queue", "queues", one, ("404", "422", *READ)),
        },
        "/api/queues/{name}/pause": post(
            "pauseQueue", "Stop every daemon from starting the queue's tasks", one
        ),
        "/api/queues/{name}/resume": post("resumeQueue", "Start the queue's tasks again", one),
        "/api/queues/{name}/purge": purge,
    }


def _probe_paths() -> dict[str, Any]:
    """Health, readiness, metrics and docs."""
    health = json_body(ref("Health"), "Healthy")
    not_ready = json_body(ref("Health"), "Not ready") | {
        "headers": {"Retry-After": {"schema": {"type": "string"}}}
    }

    def text(media: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {media: {"schema": {"type": "string"}}}}

    return {
        "/healthz": {
            "get": _operation(
                "healthz", "The process is alive", "system", {"200": health}, ("421",)
            )
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "Redis reachable, workers and event relay running",
                "system",
                {"200": health, "503": not_ready},
                ("421",),
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics",
                "system",
                {"200": text("text/plain", "Text format")},
                ("421", "503"),
            )
        },
    }


def paths() -> dict[str, Any]:
    """Every path of the core API."""
    return _collection_paths() | _item_paths() | _queue_paths() | _system_paths() | _probe_paths()
