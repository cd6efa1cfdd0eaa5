"""``/docs``: an interactive API reference (Swagger UI) on ``/api/openapi.json``.

Swagger UI's files come from the ``openapi-ui-bundles`` package, read once when the app is
built, like the dashboard's: nothing is loaded from another host (taskd often runs where
there is no internet, and a CDN would see every visit). The page and its start-up script
are the dashboard's files ``docs.html`` and ``docs.js``, sent with the dashboard's strict
security headers (no inline script, no framing, connections only to this origin).
"""

from __future__ import annotations

from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from aiohttp import web
from openapi_ui_bundles import swagger_ui

from taskd.http.dashboard import ASSETS, Asset, Assets, make_asset, send

__all__ = ["SWAGGER", "asset", "load_swagger", "page"]

SWAGGER: Final = web.AppKey("swagger_assets", Assets)
_FILES: Final = ("swagger-ui.css", "swagger-ui-bundle.js")


def load_swagger(folder: Traversable | Path | None = None) -> Assets:
    """The Swagger UI files /docs needs (none when the package lacks them)."""
    root = folder if folder is not None else swagger_ui.static_path
    found: dict[str, Asset] = {}
    for name in _FILES:
        entry = root / name
        if entry.is_file():
            found[name] = make_asset(name, entry.read_bytes())
    return Assets(found)


async def page(request: web.Request) -> web.Response:
    """GET /docs: the reference page (Swagger UI fetches the description itself)."""
    item = request.app[ASSETS].get("docs.html")
    if item is None or not request.app[SWAGGER].files:
        raise web.HTTPNotFound(reason="the API reference is not installed")
    return send(request, item)


async def asset(request: web.Request) -> web.Response:
    """GET /docs/{name}: Swagger UI's script or style sheet."""
    item = request.app[SWAGGER].get(request.match_info["name"])
    if item is None:
        raise web.HTTPNotFound()
    return send(request, item)
