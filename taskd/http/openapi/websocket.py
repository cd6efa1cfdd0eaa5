"""``/ws``, described as what it is: a WebSocket, not a REST operation.

OpenAPI 3.1 cannot describe a WebSocket, and listing ``GET /ws`` as an operation made
client generators and fuzzers treat it as one (a plain GET that answers 400). So ``/ws``
is not under ``paths``: the ``x-websocket`` extension names its URL, query parameters,
authentication, close codes and messages, and each message has a component schema
(``WsSnapshot``, ``WsEvents``, ``WsResumed``, ``WsStats``, ``WsWorkflow``) a typed
client can use.
"""

from __future__ import annotations

from typing import Any, Final

from taskd.http.openapi.common import INT, STR, TIME, obj, ref
from taskd.model import STATUS_NAMES

DESCRIPTION: Final = """\
Connect to `ws://<host>/ws` (optionally `?since=<last_event_id>`; with auth, an
`Authorization: Bearer` header, `?token=`, or `{"type": "auth", "token": "..."}` as the
first message). The server sends JSON text messages:

* `{"type": "snapshot", "reason", "stats", "tasks": [newest 100], "last_event_id"}` first
  (rows as in listings: big payloads and results are null with `*_truncated: true`);
* `{"type": "events", "events": [{"event_id", "queue", "kind", "ts", "task"}],
  "last_event_id"}` batches, at most about ten per second, latest state per task;
* `{"type": "resumed", "replayed", "last_event_id"}` after replaying history for `since`
  (too old: a fresh snapshot with `"reason": "since_too_old"` instead);
* `{"type": "stats", "stats"}` when the overview changes, at most about once a second;
* `{"type": "workflow", "kind", "workflow": {"id", "name", "status", "created_at",
  "counts"}}` when a workflow was created (`kind` `created`) or its status changed
  (`kind` = the new status: `completed`, `failed`, `cancelled`, or `running` again after
  a hand retry); sent after the task events that caused it, once per server process,
  live only (not replayed for `since`: read `GET /api/workflows` after a reconnect).

A client that falls behind, or has unread data while the server's budget for queued bytes
is spent, is closed with 1013 and may reconnect with `since`; a failed first-message
authentication closes with 1008. Over `server.max_ws_clients` the upgrade is answered 503.
See `x-websocket` and the `Ws*` schemas.
"""

MESSAGES: Final = ("WsSnapshot", "WsEvents", "WsResumed", "WsStats", "WsWorkflow")
EVENT_ID_PATTERN: Final = "^[0-9]{1,19}(-[0-9]{1,19})?$"


def extension() -> dict[str, Any]:
    """The ``x-websocket`` object."""
    return {
        "path": "/ws",
        "subprotocols": [],
        "query": {
            "since": {
                "type": "string",
                "description": "last_event_id of an earlier connection, or an event id "
                f"({EVENT_ID_PATTERN}); malformed: 422 before the upgrade.",
            },
            "token": {"type": "string", "description": "Bearer token (or send it first)."},
        },
        "upgrade_errors": {
            "400": "not a WebSocket upgrade",
            "401": "invalid token",
            "403": "foreign browser Origin",
            "421": "foreign Host on a server without tokens",
            "422": "malformed since",
            "503": "too many WebSocket clients, or Redis unavailable",
        },
        "close_codes": {
            "1001": "server shutting down",
            "1008": "authentication required or failed",
            "1013": "too slow, or Redis unavailable: reconnect with since",
        },
        "messages": {"oneOf": [ref(n) for n in MESSAGES]},
    }


def schemas() -> dict[str, Any]:
    """The message schemas."""
    kind = {"type": "string"}
    position = STR | {"description": "Token to resume with (?since=)."}
    task = {
        "type": "object",
        "description": "The fields of the task that changed (merge into what you know).",
        "properties": {"status": {"enum": list(STATUS_NAMES)}, "id": STR},
    }
    event = obj(
        {"event_id": STR, "queue": STR, "kind": STR, "ts": TIME, "task": task},
        "event_id",
        "queue",
        "kind",
        "ts",
        "task",
    )
    return {
        "WsSnapshot": obj(
            {
                "type": kind | {"const": "snapshot"},
                "reason": {"enum": ["initial", "since_too_old", "resync"]},
                "stats": ref("Overview"),
                "tasks": {"type": "array", "items": ref("TaskRow")},
                "last_event_id": position,
            },
            "type",
            "reason",
            "stats",
            "tasks",
            "last_event_id",
        ),
        "WsEvents": obj(
            {
                "type": kind | {"const": "events"},
                "events": {"type": "array", "items": event},
                "last_event_id": position,
            },
            "type",
            "events",
            "last_event_id",
        ),
        "WsResumed": obj(
            {
                "type": kind | {"const": "resumed"},
                "replayed": INT | {"minimum": 0},
                "last_event_id": position,
            },
            "type",
            "replayed",
            "last_event_id",
        ),
        "WsStats": obj(
            {"type": kind | {"const": "stats"}, "stats": ref("Overview")}, "type", "stats"
        ),
        "WsWorkflow": obj(
            {
                "type": kind | {"const": "workflow"},
                "kind": {"enum": ["created", "running", "completed", "failed", "cancelled"]},
                "workflow": ref("Workflow"),
            },
            "type",
            "kind",
            "workflow",
        ),
    }
