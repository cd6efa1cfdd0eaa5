"""The public JSON shapes the API and the WebSocket send, built from engine objects.

Events carry the task as the strings Redis holds; they are converted here to the same
types as :meth:`taskd.model.Task.to_api` (numbers, ISO-8601 timestamps), so a dashboard
handles one task shape whether it came from REST, a snapshot or an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from taskd.engine.registry import TaskType
from taskd.model import Task, ms_to_iso
from taskd.store import Event

#: A list row or snapshot row carries a payload or result only up to this size (JSON
#: bytes); bigger ones are null with ``<field>_truncated: true`` (GET /api/tasks/{id}
#: has them in full). Without it, 100 one-MiB payloads made every snapshot 100 MiB.
ROW_BODY_BYTES: Final = 1024
#: At most this many payload/result bytes in one listing or snapshot; later rows are
#: truncated even when small, so one response stays bounded whatever ``limit`` is.
BODIES_BUDGET_BYTES: Final = 128 * 1024
_BODIES: Final = ("payload", "result", "depends_on")  # a 10,000-parent fan-in is large

_INTS = ("priority", "progress", "retry_count", "max_retries", "attempt")
_TIMES = ("created_at", "updated_at", "started_at", "completed_at", "run_at")
_TEXTS = ("id", "name", "task_type", "queue", "status", "progress_message")
_OPTIONAL_TEXTS = ("worker", "error")


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response serialised with orjson (faster, and strict about NaN)."""
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def dumps(body: Any) -> str:
    """JSON text for a WebSocket frame."""
    return orjson.dumps(body).decode()


def task_rows(tasks: list[Task], budget: int = BODIES_BUDGET_BYTES) -> list[dict[str, Any]]:
    """Tasks for a listing or snapshot: every field, bodies only where small (see above)."""
    rows: list[dict[str, Any]] = []
    left = budget
    for task in tasks:
        row = task.to_api()
        for name in _BODIES:
            value = row[name]
            size = len(orjson.dumps(value)) if value is not None else 0
            cut = size > ROW_BODY_BYTES or size > left
            if cut:
                row[name] = None
            else:
                left -= size
            row[name + "_truncated"] = cut
        rows.append(row)
    return rows


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _time(value: Any) -> str | None:
    try:
        return ms_to_iso(int(value)) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def event_task(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An event's task fields (strings from Redis) in the API's types.

    Events are deltas: only the fields present are converted (an empty string means the
    field was cleared), so a reader merges them into what it knows of the task.
    """
    task: dict[str, Any] = {n: str(raw[n]) for n in _TEXTS if n in raw}
    task |= {n: _int(raw[n]) for n in _INTS if n in raw}
    task |= {n: _time(raw[n]) for n in _TIMES if n in raw}
    task |= {n: (str(raw[n]) or None) for n in _OPTIONAL_TEXTS if n in raw}
    if "timeout_s" in raw:
        try:
            task["timeout_s"] = float(raw["timeout_s"] or 0)
        except ValueError:
            task["timeout_s"] = 0.0
    return task


def event(e: Event) -> dict[str, Any]:
    """One event as sent on the WebSocket."""
    return {
        "event_id": e.event_id,
        "queue": e.queue,
        "kind": e.kind,
        "ts": ms_to_iso(e.ts),
        "task": event_task(e.task),
    }


def _seconds_to_iso(value: Any) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return (
            datetime.fromtimestamp(value, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
    except (OverflowError, OSError, ValueError):
        return None


def worker(info: Mapping[str, Any]) -> dict[str, Any]:
    """A live consumer's heartbeat record as the API shows it."""
    queues, types = info.get("queues"), info.get("task_types")
    return {
        "consumer": str(info.get("consumer", "")),
        "host": str(info.get("host", "")),
        "pid": _int(info.get("pid")),
        "queues": [str(q) for q in queues] if isinstance(queues, list) else [],
        "task_types": [str(t) for t in types] if isinstance(types, list) else [],
        "concurrency": _int(info.get("concurrency")),
        "held": _int(info.get("held")),
        "finishing": _int(info.get("finishing")),
        "completed": _int(info.get("completed")),
        "failed": _int(info.get("failed")),
        "started_at": _seconds_to_iso(info.get("started_at")),
        "heartbeat_at": _seconds_to_iso(info.get("heartbeat_at")),
    }


def remote_task_type(name: str, queues: list[str]) -> dict[str, Any]:
    """A type this node does not register but live workers of ``queues`` run."""
    return {
        "name": name,
        "description": f"Run by worker nodes of {'queues' if len(queues) > 1 else 'queue'} "
        f"{', '.join(queues)}.",
        "example": {},
        "schema": None,
    }


def task_type(t: TaskType) -> dict[str, Any]:
    """A registered task type, for the dashboard's submit form."""
    return {
        "name": t.name,
        "description": t.description,
        "example": t.example,
        "schema": t.schema,
    }
