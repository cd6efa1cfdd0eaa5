"""/docs: an interactive API reference (Swagger UI) served by taskd itself, in a real
Chromium: nothing from another host, no 404 (favicon included), the dashboard's CSP, and
"Try it out" works against the live server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from taskd.http.dashboard import SECURITY_HEADERS
from taskd.store import Store
from tests.dashboard_support import MARKS, expect, open_page, start_daemon
from tests.procs import DaemonProcess
from tests.test_http_support import serve_app

if TYPE_CHECKING:
    from playwright.async_api import Browser

Client = TestClient[Any, Any]


async def test_docs_pages_carry_the_dashboards_security_headers(store: Store) -> None:
    """/docs, its scripts and /favicon.ico are sent with the CSP, nosniff and no framing."""
    async with serve_app(store) as client:
        for path in ("/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/favicon.ico"):
            reply = await client.get(path)
            assert reply.status == 200, path
            for name, value in SECURITY_HEADERS.items():
                assert reply.headers[name] == value, (path, name)
        html = await (await client.get("/docs")).text()
        assert "<script>" not in html.replace(" ", "")  # no inline script
        assert "//" not in "".join(
            part for part in html.split('"') if part.startswith(("http", "//"))
        )
        assert (await client.get("/docs/../app.js")).status == 404


@pytest.fixture(scope="module")
async def daemon(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DaemonProcess]:
    """A real daemon."""
    d = await start_daemon(tmp_path_factory.mktemp("docs"), redis_url)
    yield d
    d.close()


@pytest.mark.parametrize("_marks", [pytest.param(None, marks=MARKS)])
async def test_docs_is_interactive_and_loads_only_from_this_server(
    browser: Browser, daemon: DaemonProcess, _marks: None
) -> None:
    """Swagger UI renders every operation, asks nothing of another host, gets no 4xx
    (no /favicon.ico 404), reports no CSP violation, and "Try it out" calls the API."""
    watched = await open_page(browser, daemon.url, "/docs", viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    failures: list[str] = []
    page = watched.page
    page.on("request", lambda r: requests.append(r.url))
    page.on("response", lambda r: r.status < 400 or failures.append(f"{r.status} {r.url}"))
    await page.reload()
    operation = page.locator("#operations-tasks-statsOverview")
    await expect(operation).to_be_visible()
    assert await page.locator(".opblock").count() >= 25
    await operation.locator(".opblock-summary").click()
    await operation.get_by_role("button", name="Try it out").click()
    await operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    await expect(status).to_have_text("200")
    own = urlsplit(daemon.url).netloc
    assert all(urlsplit(u).netloc == own for u in requests if u.startswith("http")), requests
    assert any(u.endswith(("/favicon.ico", "/favicon.svg")) for u in requests)
    assert failures == []
    assert watched.page_errors == []
    assert watched.console_errors == [], watched.console_errors
    await watched.context.close()
