"""The health listener of a worker-only node (``taskd worker --health-port``).

Only ``/healthz``, ``/readyz`` and ``/metrics``, for orchestrators and Prometheus: a
worker node serves no API, WebSocket or dashboard. The handlers and the middleware are
the API's own, so the rules for these paths (public, like on ``taskd serve``; quiet in
the access log) are the same on both kinds of node.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from taskd.http import ops, ws
from taskd.http.guard import Auth, HostCheck, RateLimiter
from taskd.http.methods import MethodTable
from taskd.http.metrics import Metrics
from taskd.http.middleware import Guard, errors
from taskd.http.state import SERVICES, STATE, AppState, Services

__all__ = ["HEALTH_ROUTES", "build_health_app"]

HEALTH_ROUTES: Final = (
    ("GET", "/healthz", ops.healthz),
    ("GET", "/readyz", ops.readyz_worker),
    ("GET", "/metrics", ops.metrics),
)


def build_health_app(state: AppState) -> web.Application:
    """The health-only application for ``state`` (its relay is never run)."""
    server = state.settings.server
    auth = Auth(state.settings.auth)
    open_access = not auth.required or auth.allow_anonymous  # as on the API (DNS rebinding)
    guard = Guard(
        auth,
        RateLimiter(server.rate_limit_per_s),
        server.allowed_origins,
        server.request_timeout_s,
        HostCheck(server.host, server.allowed_hosts) if open_access else None,
        MethodTable((method, path) for method, path, _ in HEALTH_ROUTES),
    )
    app = web.Application(middlewares=[errors, guard.middleware], client_max_size=1024)
    metrics = Metrics(state.pool.consumer if state.pool else None, lambda: 0)
    if state.pool is not None:
        state.pool.finished_hooks.append(metrics.task_finished)
    app[STATE] = state
    # No WebSocket is ever accepted here: the hub only completes the typed services.
    app[SERVICES] = Services(hub=ws.Hub(state, auth), metrics=metrics, openapi={})
    for method, path, handler in HEALTH_ROUTES:
        app.router.add_route(method, path, handler)
    return app
