"""Read-only views that explain state: a task's lease and history, its artifacts, Redis.

These answer the questions a stuck or failed task raises (who holds it, since when, how
often was it delivered, what happened on each attempt) and the first one a growing Redis
raises (how much memory, how many keys are taskd's, when do finished tasks go).
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from taskd.handlers.artifacts import artifact_path, content_type
from taskd.http.middleware import error_body
from taskd.http.shapes import event_task, json_response
from taskd.http.state import STATE
from taskd.model import ms_to_iso

HISTORY_SCAN: Final = 5000
KEY_COUNT_LIMIT: Final = 100_000
_HISTORY_FIELDS: Final = ("status", "attempt", "retry_count", "worker", "error", "progress")


async def task_lease(request: web.Request) -> web.Response:
    """GET /api/tasks/{task_id}/lease: holder, lease age and delivery count of its entry."""
    state = request.app[STATE]
    store = state.store
    task = await store.get(request.match_info["task_id"])
    lease_ms = int(state.settings.tasks.lease_s * 1000)
    body: dict[str, Any] = {
        "task_id": task.id,
        "status": str(task.status),
        "attempt": task.attempt,
        "worker": task.worker,
        "started_at": ms_to_iso(task.started_at),
        "lease_s": state.settings.tasks.lease_s,
        "held": False,
        "holder": None,
        "holder_alive": None,
        "lease_age_ms": None,
        "expires_in_ms": None,
        "delivery_count": None,
    }
    held = None if task.status.finished else await store.lease(task)
    if held is not None:
        holder, idle_ms, deliveries = held
        body |= {
            "held": True,
            "holder": holder,
            "holder_alive": await store.is_alive(holder),
            "lease_age_ms": idle_ms,
            "expires_in_ms": max(0, lease_ms - idle_ms),
            "delivery_count": deliveries,
        }
    return json_response(body)


async def task_history(request: web.Request) -> web.Response:
    """GET /api/tasks/{task_id}/history: its transitions from the capped events stream.

    Progress events are counted rather than listed: they are many and say little once
    the task has moved on.
    """
    store = request.app[STATE].store
    task = await store.get(request.match_info["task_id"])
    events, complete = await store.task_events(task, max_scan=HISTORY_SCAN)
    listed: list[dict[str, Any]] = []
    progress = 0
    state: dict[str, Any] = {}  # events are deltas: carry the task's fields forward
    for event in events:
        state |= event_task(event.task)
        if event.kind == "progress":
            progress += 1
            continue
        listed.append(
            {"event_id": event.event_id, "kind": event.kind, "ts": ms_to_iso(event.ts)}
            | {name: state.get(name) for name in _HISTORY_FIELDS}
        )
    return json_response(
        {
            "task_id": task.id,
            "events": listed,
            "progress_events": progress,
            "complete": complete,
        }
    )


async def task_artifact(request: web.Request) -> web.StreamResponse:
    """GET /api/tasks/{task_id}/artifacts/{name}: a file a task produced, as a download.

    Always an attachment, sandboxed and never sniffed: a report's HTML may quote task
    names and payloads, and must not run in the dashboard's origin.
    """
    settings = request.app[STATE].settings
    task_id, name = request.match_info["task_id"], request.match_info["name"]
    path = artifact_path(settings, task_id, name)
    if not path.is_file():
        message = f"task {task_id} has no artifact {name!r}"
        body = error_body("not_found", message, {"task_id": task_id, "name": name})
        return json_response(body, status=404)
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type(name),
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-cache",
        },
    )


async def redis_facts(request: web.Request) -> web.Response:
    """GET /api/redis: server version, memory, keys held by taskd, retention settings."""
    state = request.app[STATE]
    store = state.store
    facts = await store.server_facts()
    keys, complete = await store.count_keys(KEY_COUNT_LIMIT)
    tasks = state.settings.tasks
    return json_response(
        {
            "server": {k: facts[k] for k in ("flavour", "version", "mode", "nodes", "uptime_s")},
            "memory": {
                "used_bytes": facts["used_memory"],
                "peak_bytes": facts["used_memory_peak"],
                "max_bytes": facts["maxmemory"],
                "policy": facts["maxmemory_policy"],
            },
            "keys": {"taskd": keys, "complete": complete, "limit": KEY_COUNT_LIMIT},
            "retention": {
                "finished_task_s": tasks.retention_s,
                "events_per_queue": store.events_maxlen,
                "lease_s": tasks.lease_s,
                "max_retries": tasks.max_retries,
            },
            "queues": len(await store.queues()),
        }
    )
