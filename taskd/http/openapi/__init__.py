"""The OpenAPI 3.1 description of every endpoint: one package, built once per app.

It is what ``/api/openapi.json`` serves, what ``/docs`` (Swagger UI) shows, and what the
fuzz test holds the running server to, so it has to be exact. Where things live:

- :mod:`.common`: media type, references, parameters, operations, shared error answers;
- :mod:`.schemas`: the bodies; the submit schema is generated from the registry, so each
  task type's payload schema is the one that validates submissions;
- :mod:`.paths`: the core API (tasks, queues, system, probes);
- :mod:`.websocket`: ``/ws`` and its messages (``x-websocket``: not a REST operation);
- :mod:`.dashboard`: what the dashboard needs beyond it (lease, history, artifacts, bulk);
- :mod:`.history`: the per-minute metrics history;
- :mod:`.workflows`: workflows (DAGs of tasks).

A new route's documentation goes into the module of its part, and :func:`build_spec`
merges them.
"""

from __future__ import annotations

from typing import Any

from taskd.engine.registry import Registry
from taskd.http.openapi import websocket
from taskd.http.openapi.common import ERRORS
from taskd.http.openapi.dashboard import dashboard_paths, dashboard_schemas
from taskd.http.openapi.history import history_paths, history_schemas
from taskd.http.openapi.paths import paths
from taskd.http.openapi.schemas import component_schemas, queue_schemas
from taskd.http.openapi.workflows import workflow_paths, workflow_schemas

__all__ = ["build_spec"]


def build_spec(registry: Registry, *, auth_required: bool, version: str) -> dict[str, Any]:
    """The whole description; ``auth_required`` adds the bearer requirement."""
    description = (
        "A real-time task queue on Redis Streams. Errors are always "
        '`{"error": {"code", "message", "details"}}`. Paths also answer with a trailing '
        "slash.\n\n## WebSocket `/ws`\n\n" + websocket.DESCRIPTION
    )
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "taskd", "version": version, "description": description},
        "tags": [{"name": n} for n in ("tasks", "workflows", "queues", "events", "system")],
        "paths": paths() | dashboard_paths() | history_paths() | workflow_paths(),
        "x-websocket": websocket.extension(),
        "components": {
            "schemas": component_schemas(registry)
            | queue_schemas()
            | dashboard_schemas()
            | history_schemas()
            | workflow_schemas(registry)
            | websocket.schemas(),
            "responses": {f"E{code}": response for code, response in ERRORS.items()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if auth_required:
        for path, item in spec["paths"].items():
            if path.startswith("/api"):
                for method, op in item.items():
                    if method != "parameters":
                        op["security"] = [{"bearer": []}]
    return spec
