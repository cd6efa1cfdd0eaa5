"""JSON Schemas of the API's bodies (the OpenAPI ``components.schemas`` section).

Kept apart from the paths in :mod:`taskd.http.openapi` so each reads on its own; the
submit schema is built from the registry, so it names exactly the registered task types.
"""

from __future__ import annotations

from typing import Any

from taskd.model import (
    MAX_NAME_LEN,
    MAX_PRIORITY,
    MAX_UNIQUE_KEY_LEN,
    MIN_PRIORITY,
    QUEUE_NAME,
    STATUS_NAMES,
)
from taskd.registry import Registry

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
        },
    }


def _create_schema(registry: Registry) -> dict[str, Any]:
    names = [t.name for t in registry]
    variants = [
        {"properties": {"task_type": {"const": t.name}, "payload": t.schema}}
        for t in registry
        if t.schema
    ]
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["task_type"],
        "additionalProperties": False,
        "properties": {
            "task_type": {
                "type": "string",
                "enum": names,
                "description": "A registered type (GET /api/task-types).",
            },
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN},
            "priority": {
                "type": "integer",
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
            "queue": {"type": "string", "pattern": QUEUE_NAME.pattern, "default": "default"},
            "delay_s": {"type": "number", "minimum": 0, "maximum": 365 * 86400},
            "run_at": {"type": "string", "format": "date-time"},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 1000},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 7 * 86400},
            "unique_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_UNIQUE_KEY_LEN,
                "description": "Idempotency key: a live task with the same key "
                "is returned instead of a new one.",
            },
        },
        "not": {"required": ["delay_s", "run_at"]},
        "example": {
            "name": "Test Task",
            "task_type": "data_processing",
            "priority": 5,
            "payload": {"records": 1000},
        },
    }
    if variants:
        others = [
            n
            for n in names
            if not any(v["properties"]["task_type"]["const"] == n for v in variants)
        ]
        if others:
            variants.append({"properties": {"task_type": {"enum": others}}})
        schema["anyOf"] = variants
    return schema


def component_schemas(registry: Registry) -> dict[str, Any]:
    counts = {name: {"type": "integer"} for name in (*STATUS_NAMES, "total")}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {},
                    },
                }
            },
        },
        "Task": _task_schema(),
        "TaskCreate": _create_schema(registry),
        "TaskList": {
            "type": "object",
            "required": ["tasks", "next_cursor"],
            "properties": {
                "tasks": {"type": "array", "items": ref("Task")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "BatchResult": {
            "type": "object",
            "required": ["tasks", "created"],
            "properties": {
                "tasks": {"type": "array", "items": ref("Task")},
                "created": {"type": "integer", "minimum": 0},
            },
        },
        "Overview": {
            "type": "object",
            "required": [*counts, "throughput", "depth_by_priority"],
            "additionalProperties": {"type": "integer"},
            "properties": counts
            | {
                "throughput": {
                    "type": "object",
                    "required": ["completed_per_s", "failed_per_s"],
                    "properties": {
                        "completed_per_s": {"type": "number"},
                        "failed_per_s": {"type": "number"},
                        "window_s": {"type": "number"},
                    },
                },
                "depth_by_priority": {
                    "type": "object",
                    "additionalProperties": {"type": "integer"},
                },
            },
        },
        "Worker": {
            "type": "object",
            "required": ["consumer", "host", "pid", "held"],
            "properties": {
                "consumer": {"type": "string"},
                "host": {"type": "string"},
                "pid": {"type": "integer"},
                "held": {"type": "integer"},
                "queues": {"type": "array", "items": {"type": "string"}},
                "concurrency": {"type": "integer"},
                "completed": {"type": "integer"},
                "failed": {"type": "integer"},
                "started_at": TIME,
                "heartbeat_at": TIME,
            },
        },
        "TaskType": {
            "type": "object",
            "required": ["name", "description", "example"],
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "example": {"type": "object"},
                "schema": {"type": ["object", "null"]},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string"},
                "redis_latency_ms": {"type": ["number", "null"]},
                "problems": {"type": "array", "items": {"type": "string"}},
            },
        },
    }
