"""GET /api/tasks/stats/history: per-minute counts and run-time percentiles from Redis.

The counts are written by the scripts that make the transitions, so every daemon, every
reload of the dashboard and every restart sees the same history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from taskd.errors import ValidationError
from taskd.history import BUCKET_S, RETENTION_MINUTES, shape, sum_by_minute
from taskd.http.shapes import json_response
from taskd.http.state import STATE
from taskd.model import QUEUE_NAME, TASK_TYPE_NAME, int_from_text

PARAMS: Final = frozenset({"minutes", "queue", "task_type", "bucket_s"})
DEFAULT_MINUTES: Final = 60
MAX_BUCKET_S: Final = 86_400


async def stats_history(request: web.Request) -> web.Response:
    """GET /api/tasks/stats/history?minutes=N[&queue=…][&task_type=…][&bucket_s=…]."""
    query = request.query
    unknown = sorted(set(query) - PARAMS)
    if unknown:
        raise ValidationError(unknown[0], f"unknown parameter; known: {', '.join(sorted(PARAMS))}")
    minutes = _integer(query, "minutes", DEFAULT_MINUTES, 1, RETENTION_MINUTES)
    bucket_s = _integer(query, "bucket_s", BUCKET_S, BUCKET_S, MAX_BUCKET_S)
    if bucket_s % BUCKET_S:
        raise ValidationError("bucket_s", f"must be a multiple of {BUCKET_S}")
    queue = query.get("queue")
    if queue is not None and not QUEUE_NAME.fullmatch(queue):
        raise ValidationError("queue", "must be 1-64 characters of letters, digits, _.-")
    task_type = query.get("task_type")
    if task_type is not None and not TASK_TYPE_NAME.fullmatch(task_type):
        raise ValidationError("task_type", "must be 1-100 characters of letters, digits, _.-:")
    store = request.app[STATE].store
    last = await store.redis_minute()
    first = last - minutes + 1
    rows = await store.history(first, last, queue, task_type)
    # A busy week is tens of thousands of fields: summed off the event loop.
    body = await asyncio.to_thread(_answer, rows, first, last, bucket_s)
    return json_response(body)


def _answer(rows: list[tuple[int, str]], first: int, last: int, bucket_s: int) -> dict[str, Any]:
    return shape(sum_by_minute(rows), first, last, bucket_s)


def _integer(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    return int_from_text(name, raw, low, high)  # 60.0 too: an integer to JSON Schema
