"""REST handlers for queues: list them with counts, depth and throughput; pause, resume, purge.

A queue exists once a task was submitted to it or a daemon serves it (both register it
in Redis); the routes that name one answer 404 for any other name, so a typo in
``taskd pause emials`` is an error instead of a new, silently paused queue.

The JSON Schemas of these answers are in :mod:`taskd.http.openapi.schemas`, with the
rest of the description.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from aiohttp import web

from taskd.errors import ValidationError
from taskd.http.api import read_json
from taskd.http.middleware import error_body
from taskd.http.shapes import json_response
from taskd.http.state import STATE
from taskd.model import QUEUE_NAME, STATUS_NAMES, parse_queue_spec
from taskd.store import Store

CONFIRM: Final = 'purging cancels every waiting task: send {"confirm": true}'


class QueueRates:
    """Completed and failed tasks per second of each queue, over a sliding window.

    Fed once a second (:meth:`sample`) by what each queue's monotonic ``completed_total``
    and ``failed_total`` counters grew by: every daemon writes them, so the rate covers the
    whole system for one pipeline a second, whatever the load, and one request is enough
    to get it. The window starts when this process does: right after a start,
    ``window_s`` says how short it still is.
    """

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._started = clock()
        # Per queue: [second, completed, failed] buckets, oldest first.
        self._buckets: dict[str, deque[list[int]]] = {}
        self._last: dict[str, tuple[int, int]] = {}
        self._sampled = False

    async def sample(self, store: Store) -> None:
        """Read every queue's counters and count their growth."""
        self.observe(await store.queue_totals(await store.queues()))

    def observe(self, totals: Mapping[str, tuple[int, int]]) -> None:
        """Count what each queue's (completed_total, failed_total) grew by since the last
        sample; a queue first seen after the first sample counts from zero."""
        second = int(self._clock())
        for queue, (completed, failed) in totals.items():
            last = self._last.get(queue) or ((0, 0) if self._sampled else (completed, failed))
            self._last[queue] = (completed, failed)
            more_completed, more_failed = completed - last[0], failed - last[1]
            if more_completed < 0 or more_failed < 0 or not (more_completed or more_failed):
                continue  # nothing new, or the counters restarted (Redis was flushed)
            buckets = self._buckets.setdefault(queue, deque())
            if not buckets or buckets[-1][0] != second:
                buckets.append([second, 0, 0])
                self._prune(buckets, second)
            buckets[-1][1] += more_completed
            buckets[-1][2] += more_failed
        self._sampled = True

    def _prune(self, buckets: deque[list[int]], second: int) -> None:
        while buckets and buckets[0][0] <= second - self.window_s:
            buckets.popleft()

    def rates(self, queue: str) -> dict[str, float]:
        """``completed_per_s``, ``failed_per_s`` and the ``window_s`` they cover."""
        now = self._clock()
        buckets = self._buckets.get(queue, deque())
        self._prune(buckets, int(now))
        span = max(1.0, min(self.window_s, now - self._started))
        return {
            "completed_per_s": round(sum(b[1] for b in buckets) / span, 3),
            "failed_per_s": round(sum(b[2] for b in buckets) / span, 3),
            "window_s": round(span, 3),
        }


RATES = web.AppKey("queue_rates", QueueRates)


def summary(
    name: str,
    counts: Mapping[str, int],
    depth: Mapping[int, int],
    paused: bool,
    workers: int,
    throughput: Mapping[str, float],
) -> dict[str, Any]:
    """One queue as the API shows it (the ``Queue`` schema)."""
    return {
        "name": name,
        "paused": paused,
        "counts": {status: counts.get(status, 0) for status in (*STATUS_NAMES, "total")},
        "depth_by_priority": {str(p): n for p, n in sorted(depth.items())},
        "throughput": dict(throughput),
        "workers": workers,
    }


def _serving(infos: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Queue -> live consumers (daemons) that serve it, from their heartbeat records."""
    found: dict[str, int] = {}
    for info in infos:
        specs = info.get("queues")
        for spec in specs if isinstance(specs, list) else []:
            try:
                name, _ = parse_queue_spec(str(spec))
            except ValidationError:
                continue
            found[name] = found.get(name, 0) + 1
    return found


async def _summaries(request: web.Request, names: list[str]) -> list[dict[str, Any]]:
    store = request.app[STATE].store
    rates = request.app[RATES]
    states = await store.queue_states(names)
    serving = _serving(await store.workers())
    return [
        summary(name, counts, depth, paused, serving.get(name, 0), rates.rates(name))
        for name, (counts, depth, paused) in zip(names, states, strict=True)
    ]


def _not_found(name: str) -> web.Response:
    # No TaskdError means "no such queue", and the middleware's table is not ours to grow.
    message = f"queue {name!r} not found (no task was submitted to it and no daemon serves it)"
    return json_response(error_body("not_found", message, {"queue": name}), status=404)


async def _known(request: web.Request) -> tuple[Store, str, bool]:
    """The store, the path's queue name (422 when malformed) and whether the queue exists."""
    name = request.match_info["name"]
    if not QUEUE_NAME.fullmatch(name):
        raise ValidationError("name", "must be 1-64 characters of letters, digits, _.-")
    store = request.app[STATE].store
    return store, name, name in await store.queues()


async def list_queues(request: web.Request) -> web.Response:
    """GET /api/queues: every queue, sorted by name; one Redis round trip for all counts."""
    names = await request.app[STATE].store.queues()
    return json_response({"queues": await _summaries(request, names)})


async def get_queue(request: web.Request) -> web.Response:
    """GET /api/queues/{name}."""
    _, name, exists = await _known(request)
    if not exists:
        return _not_found(name)
    (found,) = await _summaries(request, [name])
    return json_response(found)


async def pause_queue(request: web.Request) -> web.Response:
    """POST /api/queues/{name}/pause: no daemon starts its tasks; submitting still works."""
    store, name, exists = await _known(request)
    if not exists:
        return _not_found(name)
    await store.pause(name)
    (found,) = await _summaries(request, [name])
    return json_response(found)


async def resume_queue(request: web.Request) -> web.Response:
    """POST /api/queues/{name}/resume: daemons start its tasks again."""
    store, name, exists = await _known(request)
    if not exists:
        return _not_found(name)
    await store.resume(name)
    (found,) = await _summaries(request, [name])
    return json_response(found)


async def purge_queue(request: web.Request) -> web.Response:
    """POST /api/queues/{name}/purge with ``{"confirm": true}``: cancel its waiting tasks.

    Pending, scheduled and retrying tasks become cancelled (error "purged"); running
    ones finish. The confirmation is in the body so that no stray POST (a crawler, a
    replayed request without its body) can empty a queue.
    """
    store, name, exists = await _known(request)
    if not (await request.read()).strip():
        raise ValidationError("confirm", CONFIRM)
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("confirm") is not True:
        raise ValidationError("confirm", CONFIRM)
    if unknown := sorted(set(body) - {"confirm"}):
        raise ValidationError(unknown[0], "unknown field")
    if not exists:
        return _not_found(name)
    return json_response({"queue": name, "purged": await store.purge(name)})
