"""The dashboard: ``/`` and its assets, served from the ``taskd/web`` package folder.

The files are read once, when the application is built, into an in-memory table keyed
by file name. A request can only name an entry of that table, so no request ever reaches
the file system: path traversal, symlinks and dot files are impossible by construction,
not by checks. There is no build step, so asset names carry no content hash; responses
are sent with ``Cache-Control: no-cache`` and a strong ETag, which makes a reload after an
upgrade cheap (304) and never stale.

Every response carries a strict Content-Security-Policy (no inline script or style, no
framing, connections only to this origin) so that a task name or payload rendered by the
page can never run as code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final

from aiohttp import web

__all__ = [
    "ASSETS",
    "SECURITY_HEADERS",
    "Asset",
    "Assets",
    "asset",
    "favicon",
    "index",
    "load_assets",
    "make_asset",
    "send",
]

_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(?:js|css|svg|html)$")
_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}
CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the dashboard, ready to send."""

    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True, slots=True)
class Assets:
    """The dashboard's files by name: the only things the asset route can answer with."""

    files: Mapping[str, Asset] = field(default_factory=dict)

    def get(self, name: str) -> Asset | None:
        """The file called ``name``, or None."""
        return self.files.get(name)


ASSETS: Final = web.AppKey("dashboard_assets", Assets)


def load_assets(folder: Traversable | None = None) -> Assets:
    """Every servable file of ``taskd/web`` (flat: sub-folders are not served)."""
    root = folder if folder is not None else resources.files("taskd") / "web"
    found: dict[str, Asset] = {}
    if not root.is_dir():
        return Assets(found)
    for entry in root.iterdir():
        if not entry.is_file() or not _NAME.fullmatch(entry.name):
            continue
        found[entry.name] = make_asset(entry.name, entry.read_bytes())
    return Assets(found)


def make_asset(name: str, body: bytes) -> Asset:
    """A servable file: its type from the name's suffix, a strong ETag from its bytes."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, _TYPES[name[name.rindex(".") :]], etag)


def send(request: web.Request, item: Asset) -> web.Response:
    """A file with the security headers, or 304 when the client's copy is current."""
    headers = SECURITY_HEADERS | {"Cache-Control": "no-cache", "ETag": item.etag}
    if item.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=item.body, headers=headers | {"Content-Type": item.content_type})


async def index(request: web.Request) -> web.Response:
    """GET /: the page (the task detail URL ``/#/tasks/<id>`` is the same document)."""
    item = request.app[ASSETS].get("index.html")
    if item is None:
        raise web.HTTPNotFound(reason="the dashboard is not installed")
    return send(request, item)


async def favicon(request: web.Request) -> web.Response:
    """GET /favicon.ico: the icon (SVG) for pages that do not name one, so no 404."""
    item = request.app[ASSETS].get("favicon.svg")
    if item is None:
        raise web.HTTPNotFound()
    return send(request, item)


async def asset(request: web.Request) -> web.Response:
    """GET /assets/{name}: a script, style sheet or icon of the dashboard."""
    name = request.match_info["name"]
    item = None if name.endswith(".html") else request.app[ASSETS].get(name)
    if item is None:
        raise web.HTTPNotFound()
    return send(request, item)
