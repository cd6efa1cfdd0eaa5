"""OpenAPI path and schema of GET /api/tasks/stats/history (see taskd.http.history)."""

from __future__ import annotations

from typing import Any, Final

from taskd.history import BUCKET_S, RETENTION_MINUTES
from taskd.http.history import DEFAULT_MINUTES, MAX_BUCKET_S
from taskd.http.openapi.common import INT, JSON, READ, obj, ref
from taskd.model import QUEUE_NAME, TASK_TYPE_NAME

_ERRORS: Final = ("422", *READ)
_PERCENTILE: Final = {
    "type": ["number", "null"],
    "description": "Run time of completed tasks in ms, interpolated inside log-spaced "
    "buckets (within one bucket width); null when nothing completed.",
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def history_paths() -> dict[str, Any]:
    """The history route."""
    parameters = [
        _query(
            "minutes",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": RETENTION_MINUTES,
                "default": DEFAULT_MINUTES,
            },
            "How far back, in minutes (7 days at most); the current minute is the last.",
        ),
        _query("queue", {"type": "string", "pattern": QUEUE_NAME.pattern}, "One queue only."),
        _query(
            "task_type",
            {"type": "string", "pattern": TASK_TYPE_NAME.pattern},
            "One task type only.",
        ),
        _query(
            "bucket_s",
            {
                "type": "integer",
                "minimum": BUCKET_S,
                "maximum": MAX_BUCKET_S,
                "multipleOf": BUCKET_S,
                "default": BUCKET_S,
            },
            "Width of one bucket in seconds (minutes summed; percentiles over the sum).",
        ),
    ]
    ok = {
        "200": {
            "description": "Oldest bucket first",
            "content": {JSON: {"schema": ref("StatsHistory")}},
        }
    }
    return {
        "/api/tasks/stats/history": {
            "get": {
                "operationId": "statsHistory",
                "summary": "Submitted, completed, failed and run-time p50/p95 per minute, "
                "kept in Redis for 7 days",
                "tags": ["tasks"],
                "parameters": parameters,
                "responses": ok
                | {code: {"$ref": f"#/components/responses/E{code}"} for code in _ERRORS},
            }
        }
    }


def history_schemas() -> dict[str, Any]:
    """The history answer."""
    bucket = obj(
        {
            "at": {"type": "string", "format": "date-time"},
            "submitted": INT,
            "completed": INT,
            "failed": INT,
            "run_ms_p50": _PERCENTILE,
            "run_ms_p95": _PERCENTILE,
        },
        "at",
        "submitted",
        "completed",
        "failed",
        "run_ms_p50",
        "run_ms_p95",
    )
    return {
        "StatsHistory": obj(
            {"bucket_s": INT, "buckets": {"type": "array", "items": bucket}}, "bucket_s", "buckets"
        )
    }
