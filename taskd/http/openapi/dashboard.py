"""OpenAPI paths and schemas of the routes the dashboard needs beyond the core API.

Lease, history and artifacts of one task, Redis facts, bulk actions, and the dashboard's
own page and assets. Kept apart from :mod:`taskd.http.openapi` (which merges them in) so
neither module outgrows a screenful of concerns; the shapes here mirror
:mod:`taskd.http.inspection` and :mod:`taskd.http.bulk`, and the fuzz test holds the
server to them.
"""

from __future__ import annotations

from typing import Any, Final

from taskd.http.bulk import DEFAULT_LIMIT, MAX_LIMIT, STATUSES
from taskd.http.openapi.common import (
    INT,
    JSON,
    NULL_INT,
    NULL_STR,
    READ,
    STR,
    TASK_ID,
    TIME,
    WRITE,
    json_body,
    obj,
    operation,
    ref,
    text_body,
)
from taskd.model import QUEUE_NAME, STATUS_NAMES, TASK_TYPE_NAME

_ARTIFACT_TYPES: Final = (
    "text/html",
    "text/csv",
    "application/json",
    "text/plain",
    "application/octet-stream",
)


def _task_paths() -> dict[str, Any]:
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"},
        "description": "A file name from the task's result.artifacts.",
    }
    return {
        "/api/tasks/{task_id}/lease": {
            "parameters": [TASK_ID],
            "get": operation(
                "getTaskLease",
                "Who holds a running task, the lease's age and the delivery count",
                "tasks",
                {"200": json_body(ref("Lease"), "The lease (held: false when none)")},
                "404",
                *READ,
            ),
        },
        "/api/tasks/{task_id}/history": {
            "parameters": [TASK_ID],
            "get": operation(
                "getTaskHistory",
                "The task's transitions and attempt errors, from the capped event stream",
                "tasks",
                {"200": json_body(ref("History"), "Oldest first")},
                "404",
                *READ,
            ),
        },
        "/api/tasks/{task_id}/artifacts/{name}": {
            "parameters": [TASK_ID, name],
            "get": operation(
                "getTaskArtifact",
                "Download a file the task produced (always an attachment)",
                "tasks",
                {"200": text_body(_ARTIFACT_TYPES, "The file")},
                "404",
                "422",
                *READ,
            ),
        },
    }


def _bulk_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for action, schema in (("retry", "BulkRetry"), ("cancel", "BulkCancel")):
        summary = (
            "Retry every failed (or cancelled) task, optionally of one type and queue"
            if action == "retry"
            else "Cancel every waiting task, optionally of one type and queue"
        )
        paths[f"/api/tasks/bulk/{action}"] = {
            "post": operation(
                f"bulk{action.title()}",
                summary + "; dry_run only counts",
                "tasks",
                {"200": json_body(ref("BulkResult"), "What was (or would be) touched")},
                "400",
                "413",
                "422",
                *WRITE,
                requestBody={"required": True, "content": {JSON: {"schema": ref(schema)}}},
            )
        }
    return paths


def _dashboard_paths() -> dict[str, Any]:
    asset = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "A file of the dashboard (app.js, app.css, ...).",
    }
    return {
        "/api/redis": {
            "get": operation(
                "redisFacts",
                "Redis version, memory, keys held by taskd, retention settings",
                "system",
                {"200": json_body(ref("RedisFacts"), "Facts")},
                *READ,
            )
        },
        "/": {
            "get": operation(
                "dashboard",
                "The real-time dashboard",
                "system",
                {"200": text_body(("text/html",), "The page")},
                "404",
                "421",
            )
        },
        "/docs": {
            "get": operation(
                "docs",
                "This reference, interactive (Swagger UI, served by taskd itself)",
                "system",
                {"200": text_body(("text/html",), "The page")},
                "404",
                "421",
            )
        },
        "/docs/{name}": {
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "A file of Swagger UI (swagger-ui-bundle.js, swagger-ui.css).",
                }
            ],
            "get": operation(
                "docsAsset",
                "A script or style sheet of the reference page",
                "system",
                {"200": text_body(("text/javascript", "text/css"), "The file")},
                "404",
                "421",
            ),
        },
        "/favicon.ico": {
            "get": operation(
                "favicon",
                "The icon (SVG), for pages that name none",
                "system",
                {"200": text_body(("image/svg+xml",), "The icon")},
                "404",
                "421",
            )
        },
        "/assets/{name}": {
            "parameters": [asset],
            "get": operation(
                "dashboardAsset",
                "A script, style sheet or icon of the dashboard",
                "system",
                {"200": text_body(("text/javascript", "text/css", "image/svg+xml"), "The file")},
                "404",
                "421",
            ),
        },
    }


def dashboard_paths() -> dict[str, Any]:
    """Every path of this module."""
    return _task_paths() | _bulk_paths() | _dashboard_paths()


def _bulk_request(action: str) -> dict[str, Any]:
    return obj(
        {
            "status": {
                "type": "string",
                "enum": list(STATUSES[action]),
                "default": STATUSES[action][0],
            },
            "task_type": {"type": ["string", "null"], "pattern": TASK_TYPE_NAME.pattern},
            "queue": {"type": ["string", "null"], "pattern": QUEUE_NAME.pattern},
            "dry_run": {"type": "boolean", "default": False},
            "limit": INT | {"minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        },
        additionalProperties=False,
    )


def dashboard_schemas() -> dict[str, Any]:
    """The component schemas the paths refer to."""
    count = INT | {"minimum": 0}
    lease = obj(
        {
            "task_id": STR,
            "status": {"type": "string", "enum": list(STATUS_NAMES)},
            "attempt": count,
            "worker": NULL_STR,
            "started_at": TIME,
            "lease_s": {"type": "number"},
            "held": {"type": "boolean"},
            "holder": NULL_STR,
            "holder_alive": {"type": ["boolean", "null"]},
            "lease_age_ms": NULL_INT,
            "expires_in_ms": NULL_INT,
            "delivery_count": NULL_INT,
        },
        "task_id",
        "status",
        "held",
        "lease_s",
    )
    step = obj(
        {
            "event_id": STR,
            "kind": STR,
            "ts": TIME,
            "status": STR,
            "attempt": count,
            "retry_count": count,
            "worker": NULL_STR,
            "error": NULL_STR,
            "progress": count,
        },
        "event_id",
        "kind",
        "ts",
        "status",
    )
    history = obj(
        {
            "task_id": STR,
            "events": {"type": "array", "items": step},
            "progress_events": count,
            "complete": {"type": "boolean"},
        },
        "task_id",
        "events",
        "progress_events",
        "complete",
    )
    facts = obj(
        {
            "server": obj({"flavour": STR, "version": STR, "mode": STR}, "version"),
            "memory": obj({"used_bytes": count, "max_bytes": count}, "used_bytes"),
            "keys": obj({"taskd": count, "complete": {"type": "boolean"}}, "taskd", "complete"),
            "retention": {"type": "object"},
            "queues": count,
        },
        "server",
        "memory",
        "keys",
        "retention",
    )
    result = obj(
        {
            "action": {"type": "string", "enum": ["retry", "cancel"]},
            "status": STR,
            "task_type": NULL_STR,
            "queue": NULL_STR,
            "dry_run": {"type": "boolean"},
            "matched": count,
            "changed": count,
            "skipped": count,
            "more": {"type": "boolean"},
        },
        "action",
        "matched",
        "changed",
        "skipped",
        "more",
        "dry_run",
    )
    return {
        "Lease": lease,
        "History": history,
        "RedisFacts": facts,
        "BulkRetry": _bulk_request("retry"),
        "BulkCancel": _bulk_request("cancel"),
        "BulkResult": result,
    }
