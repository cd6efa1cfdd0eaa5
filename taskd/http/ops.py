"""Operational endpoints: health, readiness, metrics, workers, task types, the API description."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from taskd.errors import RedisUnavailable
from taskd.http import shapes
from taskd.http.shapes import json_response
from taskd.http.state import SERVICES, STATE, AppState


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Redis answers, the worker pool runs and the event relay is reading; 503 otherwise.

    An API-only node (no pool) is ready without workers.
    """
    state = request.app[STATE]
    problems = [] if state.relay.ready.is_set() else ["event relay not started"]
    return await _readiness(state, problems)


async def readyz_worker(request: web.Request) -> web.Response:
    """A worker-only node's readiness: Redis answers and the pool runs (it relays no events)."""
    return await _readiness(request.app[STATE], [])


async def _readiness(state: AppState, problems: list[str]) -> web.Response:
    try:
        latency: float | None = await state.store.ping()
    except RedisUnavailable as exc:
        problems.insert(0, str(exc))
        latency = None
    if state.pool is not None and not state.pool.started.is_set():
        problems.append("worker pool not running")
    body = {
        "status": "ok" if not problems else "unavailable",
        "redis_latency_ms": None if latency is None else round(latency * 1000, 3),
        "problems": problems,
    }
    headers = {"Retry-After": "1"} if problems else None
    return json_response(body, status=503 if problems else 200, headers=headers)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; shared gauges are read from Redis now."""
    registry = request.app[SERVICES].metrics
    await registry.refresh(request.app[STATE].store)
    return web.Response(body=registry.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def workers(request: web.Request) -> web.Response:
    """GET /api/workers: live consumers with their heartbeat."""
    infos = await request.app[STATE].store.workers()
    return json_response({"workers": [shapes.worker(i) for i in infos]})


async def task_types(request: web.Request) -> web.Response:
    """GET /api/task-types: registered types with a description and an example payload,
    then the types only live workers elsewhere run (an API-only node's submit form)."""
    state = request.app[STATE]
    listed = [shapes.task_type(t) for t in state.registry]
    try:
        remote = await state.known_types.elsewhere()
    except RedisUnavailable:  # the node's own types are still worth showing
        remote = {}
    listed += [shapes.remote_task_type(name, queues) for name, queues in remote.items()]
    return json_response({"task_types": listed})


async def openapi(request: web.Request) -> web.Response:
    """GET /api/openapi.json."""
    return json_response(request.app[SERVICES].openapi)
