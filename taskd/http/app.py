"""The aiohttp application: one route table, typed app state."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from taskd.errors import RedisUnavailable
from taskd.pool import WorkerPool
from taskd.store import Store


@dataclass(frozen=True, slots=True)
class AppState:
    """What handlers may use; built by the daemon."""

    store: Store
    pool: WorkerPool | None


STATE = web.AppKey("state", AppState)


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Redis answers and the worker pool is running; 503 otherwise."""
    state = request.app[STATE]
    problems = []
    try:
        latency = await state.store.ping()
    except RedisUnavailable as exc:
        problems.append(str(exc))
        latency = None
    if state.pool is not None and not state.pool.started.is_set():
        problems.append("worker pool not running")
    body = {
        "status": "ok" if not problems else "unavailable",
        "redis_latency_ms": None if latency is None else round(latency * 1000, 3),
        "problems": problems,
    }
    return web.json_response(body, status=503 if problems else 200)


def build_app(state: AppState) -> web.Application:
    """The application with every route."""
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
