"""JSON Schemas of the API's bodies (the OpenAPI ``components.schemas`` section).

Kept apart from the paths in :mod:`taskd.http.openapi` so each reads on its own; the
submit schema is built from the registry, so it names exactly the registered task types.
"""

from __future__ import annotations

import re
from typing import Any

from taskd.engine import payload_schema
from taskd.engine.registry import Registry, TaskType
from taskd.errors import ValidationError
from taskd.http.openapi.common import INT, STR, TIME, obj, ref
from taskd.model import (
    MAX_NAME_LEN,
    MAX_PRIORITY,
    MAX_UNIQUE_KEY_LEN,
    MIN_PRIORITY,
    QUEUE_NAME,
    STATUS_NAMES,
)


def _task_schema() -> dict[str, Any]:
    string_or_null = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": [
            "id",
            "name",
            "task_type",
            "queue",
            "priority",
            "payload",
            "status",
            "progress",
            "retry_count",
            "max_retries",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "task_type": {"type": "string"},
            "queue": {"type": "string"},
            "priority": {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
            "payload": {"type": "object"},
            "status": {"type": "string", "enum": list(STATUS_NAMES)},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "progress_message": {"type": "string"},
            "result": {},
            "error": string_or_null,
            "retry_count": {"type": "integer", "minimum": 0},
            "max_retries": {"type": "integer", "minimum": 0},
            "timeout_s": {"type": "number"},
            "attempt": {"type": "integer", "minimum": 0},
            "created_at": TIME,
            "updated_at": TIME,
            "started_at": TIME,
            "completed_at": TIME,
            "run_at": TIME,
            "worker": string_or_null,
            "unique_key": string_or_null,
            "cancel_requested": {"type": "boolean"},
            "workflow_id": {"type": ["string", "null"]},
            "depends_on": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "Keys of the workflow tasks it waits for (null outside one).",
            },
        },
    }


def _row_schema() -> dict[str, Any]:
    """A task in a listing or snapshot: bodies over a size limit are null and flagged."""
    row = _task_schema()
    row["properties"] |= {
        "payload": {"type": ["object", "null"]},
        "payload_truncated": {
            "type": "boolean",
            "description": "The payload is too big for a listing (null here): "
            "GET /api/tasks/{task_id} has it.",
        },
        "result_truncated": {"type": "boolean", "description": "As payload_truncated."},
        "depends_on_truncated": {"type": "boolean", "description": "As payload_truncated."},
    }
    row["required"] = [
        *row["required"],
        "payload_truncated",
        "result_truncated",
        "depends_on_truncated",
    ]
    return row


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null: null means "the default", as the server reads it."""
    kind = schema["type"]
    return schema | {"type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def _submit_fields(registry: Registry) -> dict[str, Any]:
    return {
        "task_type": STR
        | {
            "enum": [t.name for t in registry],
            "description": "A registered type (GET /api/task-types).",
        },
        "name": _nullable(STR | {"minLength": 1, "maxLength": MAX_NAME_LEN}),
        "priority": INT
        | {
            "minimum": MIN_PRIORITY,
            "maximum": MAX_PRIORITY,
            "default": 5,
            "description": "10 is the most urgent.",
        },
        "payload": {"type": ["object", "null"], "default": {}},
        "queue": STR | {"pattern": QUEUE_NAME.pattern, "default": "default"},
        "delay_s": _nullable({"type": "number", "minimum": 0, "maximum": 365 * 86400}),
        "run_at": _nullable(STR | {"format": "date-time"}),
        "max_retries": _nullable(INT | {"minimum": 0, "maximum": 1000}),
        "timeout_s": _nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 7 * 86400}),
        "unique_key": _nullable(
            STR
            | {
                "minLength": 1,
                "maxLength": MAX_UNIQUE_KEY_LEN,
                "description": "Idempotency key: a task of the queue with the same key, still "
                "kept (any status), is returned instead of a new one (see the "
                "Idempotency-Key header).",
            }
        ),
    }


def variant_name(task_type: str) -> str:
    """The component name of one task type's submit schema (``TaskCreate_email``)."""
    return "TaskCreate_" + re.sub(r"[^A-Za-z0-9._-]", "_", task_type)


def submit_variant(registry: Registry, task_type: TaskType) -> dict[str, Any]:
    """The submit schema of one type: its payload is the type's own schema, the very one
    that validates submissions (any object when the type declares none)."""
    fields = _submit_fields(registry)
    fields["task_type"] = {"const": task_type.name}
    payload = task_type.schema or {"type": "object"}
    # null is read as {}: allowed exactly when {} is (the type's schema decides).
    variants = [payload, {"type": "null"}] if _accepts_empty(payload) else [payload]
    fields["payload"] = {"anyOf": variants, "default": {}, "description": task_type.description}
    example = {"task_type": task_type.name, "payload": task_type.example or {}}
    schema = obj(fields, "task_type", additionalProperties=False, example=example)
    # Either a delay or a start time (a null one counts as absent).
    schema["not"] = {
        "required": ["delay_s", "run_at"],
        "properties": {"delay_s": {"type": "number"}, "run_at": {"type": "string"}},
    }
    return schema


def _accepts_empty(schema: dict[str, Any]) -> bool:
    try:
        payload_schema.validate(schema, {}, "payload")
    except ValidationError:
        return False
    return True


def _create_schema(registry: Registry) -> dict[str, Any]:
    """One of the per-type schemas, chosen by task_type (a client generator's union)."""
    mapping = {t.name: ref(variant_name(t.name))["$ref"] for t in registry}
    return {
        "oneOf": [{"$ref": target} for target in mapping.values()],
        "discriminator": {"propertyName": "task_type", "mapping": mapping},
    }


def _overview_schema() -> dict[str, Any]:
    counts = dict.fromkeys((*STATUS_NAMES, "total"), INT)
    number = {"type": "number"}
    throughput = obj(
        {"completed_per_s": number, "failed_per_s": number, "window_s": number},
        "completed_per_s",
        "failed_per_s",
    )
    depth = {"type": "object", "additionalProperties": INT}
    return obj(
        counts | {"throughput": throughput, "depth_by_priority": depth},
        *counts,
        "throughput",
        "depth_by_priority",
        additionalProperties=INT,
    )


def component_schemas(registry: Registry) -> dict[str, Any]:
    """Every named schema the paths refer to."""
    tasks = {"type": "array", "items": ref("Task")}
    error = obj({"code": STR, "message": STR, "details": {}}, "code", "message", "details")
    worker = obj(
        {
            "consumer": STR,
            "host": STR,
            "pid": INT,
            "held": INT,
            "finishing": INT,
            "queues": {"type": "array", "items": STR},
            "task_types": {"type": "array", "items": STR},
            "concurrency": INT,
            "completed": INT,
            "failed": INT,
            "started_at": TIME,
            "heartbeat_at": TIME,
        },
        "consumer",
        "host",
        "pid",
        "held",
    )
    task_type = obj(
        {
            "name": STR,
            "description": STR,
            "example": {"type": "object"},
            "schema": {"type": ["object", "null"]},
        },
        "name",
        "description",
        "example",
    )
    health = obj(
        {
            "status": STR,
            "redis_latency_ms": {"type": ["number", "null"]},
            "problems": {"type": "array", "items": STR},
        },
        "status",
    )
    return {
        "Error": obj({"error": error}, "error"),
        "Task": _task_schema(),
        "TaskCreate": _create_schema(registry),
        **{variant_name(t.name): submit_variant(registry, t) for t in registry},
        "TaskRow": _row_schema(),
        "TaskList": obj(
            {
                "tasks": {"type": "array", "items": ref("TaskRow")},
                "next_cursor": {"type": ["string", "null"]},
            },
            "tasks",
            "next_cursor",
        ),
        "BatchResult": obj({"tasks": tasks, "created": INT | {"minimum": 0}}, "tasks", "created"),
        "Overview": _overview_schema(),
        "Worker": worker,
        "TaskType": task_type,
        "Health": health,
    }


def queue_schemas() -> dict[str, Any]:
    """The OpenAPI component schemas of the queue routes' bodies."""
    number = {"type": "number", "minimum": 0}
    counts = obj(dict.fromkeys((*STATUS_NAMES, "total"), INT), *STATUS_NAMES, "total")
    throughput = obj(
        {"completed_per_s": number, "failed_per_s": number, "window_s": number},
        "completed_per_s",
        "failed_per_s",
        "window_s",
        description="Measured by this process from every daemon's events; window_s is "
        "60 unless the process started less than a minute ago.",
    )
    fields = {
        "name": STR,
        "paused": {"type": "boolean"},
        "counts": counts,
        "depth_by_priority": {
            "type": "object",
            "additionalProperties": INT,
            "description": "Ready tasks not yet fetched, per priority 1-10.",
        },
        "throughput": throughput,
        "workers": INT | {"minimum": 0, "description": "Live daemons that serve the queue."},
    }
    return {
        "Queue": obj(fields, *fields),
        "QueueList": obj({"queues": {"type": "array", "items": ref("Queue")}}, "queues"),
        "PurgeRequest": obj({"confirm": {"const": True}}, "confirm", additionalProperties=False),
        "Purged": obj({"queue": STR, "purged": INT | {"minimum": 0}}, "queue", "purged"),
    }
