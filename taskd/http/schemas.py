"""JSON Schemas of the API's bodies (the OpenAPI ``components.schemas`` section).

Kept apart from the paths in :mod:`taskd.http.openapi` so each reads on its own; the
submit schema is built from the registry, so it names exactly the registered task types.
"""

from __future__ import annotations

from typing import Any, Final

from taskd.engine.registry import Registry
from taskd.model import (
    MAX_NAME_LEN,
    MAX_PRIORITY,
    MAX_UNIQUE_KEY_LEN,
    MIN_PRIORITY,
    QUEUE_NAME,
    STATUS_NAMES,
)

TIME = {"type": ["string", "null"], "format": "date-time"}


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": "#/components/schemas/" + name}


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
            "workflow_id": string_or_null,
            "depends_on": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "Keys of the workflow tasks it waits for (null outside one).",
            },
        },
    }


def obj(properties: dict[str, Any], *required: str, **extra: Any) -> dict[str, Any]:
    """An object schema."""
    return {"type": "object", "required": list(required), "properties": properties, **extra}


INT: Final = {"type": "integer"}
STR: Final = {"type": "string"}


def _submit_fields(registry: Registry) -> dict[str, Any]:
    return {
        "task_type": STR
        | {
            "enum": [t.name for t in registry],
            "description": "A registered type (GET /api/task-types).",
        },
        "name": STR | {"minLength": 1, "maxLength": MAX_NAME_LEN},
        "priority": INT
        | {
            "minimum": MIN_PRIORITY,
            "maximum": MAX_PRIORITY,
            "default": 5,
            "description": "10 is the most urgent.",
        },
        "payload": {
            "type": "object",
            "default": {},
            "description": "Input of the task type (see its example).",
        },
        "queue": STR | {"pattern": QUEUE_NAME.pattern, "default": "default"},
        "delay_s": {"type": "number", "minimum": 0, "maximum": 365 * 86400},
        "run_at": STR | {"format": "date-time"},
        "max_retries": INT | {"minimum": 0, "maximum": 1000},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 7 * 86400},
        "unique_key": STR
        | {
            "minLength": 1,
            "maxLength": MAX_UNIQUE_KEY_LEN,
            "description": "Idempotency key: a live task with the same "
            "key is returned instead of a new one.",
        },
    }


def _payload_variants(registry: Registry) -> list[dict[str, Any]]:
    """Per task type with a payload schema, that schema; other types accept any object."""
    typed = [t for t in registry if t.schema]
    if not typed:
        return []
    variants: list[dict[str, Any]] = [
        {"properties": {"task_type": {"const": t.name}, "payload": t.schema}} for t in typed
    ]
    others = [t.name for t in registry if not t.schema]
    if others:
        variants.append({"properties": {"task_type": {"enum": others}}})
    return variants


def _create_schema(registry: Registry) -> dict[str, Any]:
    example = {
        "name": "Test Task",
        "task_type": "data_processing",
        "priority": 5,
        "payload": {"records": 1000},
    }
    schema = obj(_submit_fields(registry), "task_type", additionalProperties=False, example=example)
    schema["not"] = {"required": ["delay_s", "run_at"]}
    if variants := _payload_variants(registry):
        schema["anyOf"] = variants
    return schema


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
        "TaskList": obj(
            {"tasks": tasks, "next_cursor": {"type": ["string", "null"]}}, "tasks", "next_cursor"
        ),
        "BatchResult": obj({"tasks": tasks, "created": INT | {"minimum": 0}}, "tasks", "created"),
        "Overview": _overview_schema(),
        "Worker": worker,
        "TaskType": task_type,
        "Health": health,
    }
