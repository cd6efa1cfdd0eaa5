"""The aiohttp application: one route table, typed app state, the relay's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import web

from taskd import __version__
from taskd.engine.relay import raise_if_cancelling
from taskd.errors import RedisUnavailable
from taskd.http import (
    api,
    bulk,
    dashboard,
    docs,
    history,
    inspection,
    ops,
    queues,
    workflows,
    ws,
)
from taskd.http.guard import Auth, HostCheck, RateLimiter
from taskd.http.methods import MethodTable
from taskd.http.metrics import Metrics
from taskd.http.middleware import Guard, errors
from taskd.http.openapi import build_spec
from taskd.http.state import SERVICES, STATE, AppState, Services

__all__ = ["ROUTES", "SERVICES", "STATE", "AppState", "build_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The one route table. Paths under /api also answer with a trailing slash (the seed's
# clients call /api/tasks/), without a redirect.
ROUTES: Final[tuple[tuple[str, str, Handler], ...]] = (
    ("GET", "/api/tasks", api.list_tasks),
    ("POST", "/api/tasks", api.create_task),
    ("POST", "/api/tasks/batch", api.create_batch),
    # Before the /api/tasks/{task_id}/... routes, which would otherwise match "bulk".
    ("POST", "/api/tasks/bulk/retry", bulk.bulk_retry),
    ("POST", "/api/tasks/bulk/cancel", bulk.bulk_cancel),
    ("GET", "/api/tasks/stats/overview", api.stats_overview),
    ("GET", "/api/tasks/stats/history", history.stats_history),
    ("GET", "/api/tasks/{task_id}", api.get_task),
    ("DELETE", "/api/tasks/{task_id}", api.delete_task),
    ("POST", "/api/tasks/{task_id}/cancel", api.cancel_task),
    ("POST", "/api/tasks/{task_id}/retry", api.retry_task),
    ("GET", "/api/tasks/{task_id}/lease", inspection.task_lease),
    ("GET", "/api/tasks/{task_id}/history", inspection.task_history),
    ("GET", "/api/tasks/{task_id}/artifacts/{name}", inspection.task_artifact),
    ("GET", "/api/workflows", workflows.list_workflows),
    ("POST", "/api/workflows", workflows.create_workflow),
    ("GET", "/api/workflows/{workflow_id}", workflows.get_workflow),
    ("DELETE", "/api/workflows/{workflow_id}", workflows.delete_workflow),
    ("POST", "/api/workflows/{workflow_id}/cancel", workflows.cancel_workflow),
    ("GET", "/api/queues", queues.list_queues),
    ("GET", "/api/queues/{name}", queues.get_queue),
    ("POST", "/api/queues/{name}/pause", queues.pause_queue),
    ("POST", "/api/queues/{name}/resume", queues.resume_queue),
    ("POST", "/api/queues/{name}/purge", queues.purge_queue),
    ("GET", "/api/workers", ops.workers),
    ("GET", "/api/task-types", ops.task_types),
    ("GET", "/api/redis", inspection.redis_facts),
    ("GET", "/api/openapi.json", ops.openapi),
    ("GET", "/ws", ws.websocket),
    ("GET", "/healthz", ops.healthz),
    ("GET", "/readyz", ops.readyz),
    ("GET", "/metrics", ops.metrics),
    ("GET", "/docs", docs.page),
    ("GET", "/docs/{name}", docs.asset),
    ("GET", "/favicon.ico", dashboard.favicon),
    ("GET", "/", dashboard.index),
    ("GET", "/assets/{name}", dashboard.asset),
)


async def _run_relay(app: web.Application) -> AsyncIterator[None]:
    """The relay reads for as long as the app serves (aiohttp's cleanup_ctx idiom)."""
    job = asyncio.create_task(app[STATE].relay.run())
    yield
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job


async def _sample_rates(app: web.Application) -> AsyncIterator[None]:
    """Feed the per-queue rates once a second for as long as the app serves."""

    async def forever() -> None:
        while True:
            # The rates pause with Redis; the health endpoints report the outage. redis-py
            # may turn the shutdown's cancel into a connection error: it still ends this.
            with contextlib.suppress(RedisUnavailable):
                await app[queues.RATES].sample(app[STATE].store)
            raise_if_cancelling()
            await asyncio.sleep(1.0)

    job = asyncio.create_task(forever())
    yield
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job


async def _close_websockets(app: web.Application) -> None:
    """Tell WebSocket clients we are going away (1001) before the listener closes."""
    await app[SERVICES].hub.close_all()


def build_app(state: AppState) -> web.Application:
    """The application with every route, for ``state``."""
    server = state.settings.server
    auth = Auth(state.settings.auth)
    # Only a server that answers without a token can be driven by a rebinding page.
    open_access = not auth.required or auth.allow_anonymous
    hosts = HostCheck(server.host, server.allowed_hosts) if open_access else None
    guard = Guard(
        auth,
        RateLimiter(server.rate_limit_per_s),
        server.allowed_origins,
        server.request_timeout_s,
        hosts,
        MethodTable((method, path) for method, path, _ in ROUTES),
    )
    app = web.Application(
        middlewares=[errors, guard.middleware], client_max_size=server.max_body_bytes
    )
    hub = ws.Hub(state, auth)
    metrics = Metrics(state.pool.consumer if state.pool else None, lambda: len(hub.clients))
    hub.on_drop = metrics.ws_dropped.inc
    if state.pool is not None:
        state.pool.finished_hooks.append(metrics.task_finished)
    rates = queues.QueueRates()
    spec = build_spec(state.registry, auth_required=auth.required, version=__version__)
    app[STATE] = state
    app[dashboard.ASSETS] = dashboard.load_assets()
    app[docs.SWAGGER] = docs.load_swagger()
    app[queues.RATES] = rates
    app[SERVICES] = Services(hub=hub, metrics=metrics, openapi=spec)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        if path.startswith("/api/"):
            app.router.add_route(method, path + "/", handler)
    app.cleanup_ctx.append(_run_relay)
    app.cleanup_ctx.append(_sample_rates)
    app.on_shutdown.append(_close_websockets)
    return app
