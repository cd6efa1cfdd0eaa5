"""Helpers for the dashboard's browser tests (this module holds no tests of its own).

The browser is Debian's chromium driven by Playwright for Python: never a browser that
Playwright downloads. Each daemon gets a Redis database of its own in the session's
server, flushed before it starts, so the page's counts and lists hold only what a test
made, without touching any other test's keys.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.conftest import CLUSTER
from tests.procs import DaemonProcess

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

try:
    from playwright.async_api import async_playwright, expect
except ImportError:  # the tests using it are skipped (see MARKS)
    async_playwright = expect = None  # type: ignore[assignment]

CHROMIUM = Path(os.environ.get("TASKD_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--js-flags=--expose-gc",  # window.gc(): heap sizes measured after a collection
]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        async_playwright is None,
        reason="playwright is not installed (pip install -e '.[test]'; never `playwright install`)",
    ),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
    pytest.mark.skipif(CLUSTER, reason="browser tests use a database of one Redis server"),
]
QUIET = {"TASKD_RATE_LIMIT_PER_S": "0", "TASKD_LOG_LEVEL": "warning"}

if expect is not None:
    expect.set_options(timeout=15_000)


async def fresh_db(redis_url: str, db: int) -> str:
    """The URL of database ``db`` of the session's Redis, emptied."""
    url = f"{redis_url.rstrip('/')}/{db}"
    client = aioredis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return url


async def start_daemon(
    data_dir: Path,
    url: str,
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> DaemonProcess:
    """A ready `taskd serve` with the dashboard test handlers (on ``port`` if given)."""
    flags = ["--redis-url", url, "--workers", "8", "--handlers", "tests.dashboard_handlers"]
    if port is not None:
        flags += ["--port", str(port)]  # the last --port wins over DaemonProcess's own
    daemon = DaemonProcess(data_dir, *flags, *args, env=QUIET | (env or {}))
    if port is not None:
        daemon.port = port
    try:
        await daemon.ready()
    except BaseException:
        daemon.close()
        raise
    return daemon


@dataclass
class Watched:
    """A page with everything it complained about."""

    page: Page
    context: BrowserContext
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


async def open_page(browser: Browser, base_url: str, path: str = "/", **options: Any) -> Watched:
    """A new context and page at ``base_url + path``, its errors recorded."""
    options.setdefault("viewport", DESKTOP)
    context = await browser.new_context(base_url=base_url, **options)
    page = await context.new_page()
    watched = Watched(page, context)
    page.on(
        "console",
        lambda m: watched.console_errors.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: watched.page_errors.append(str(e)))
    await page.goto(path)
    return watched


async def launch() -> AsyncIterator[Browser]:
    """Headless chromium for a module's tests."""
    assert async_playwright is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


class Api:
    """REST calls to a daemon (127.0.0.1 only), with an optional token."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session = aiohttp.ClientSession(base_url, headers=headers)

    async def submit(self, task_type: str, **fields: Any) -> dict[str, Any]:
        """POST /api/tasks; returns the created task."""
        async with self.session.post("/api/tasks", json={"task_type": task_type, **fields}) as r:
            assert r.status == 201, await r.text()
            return dict(await r.json())

    async def batch(self, tasks: list[dict[str, Any]]) -> None:
        """POST /api/tasks/batch."""
        async with self.session.post("/api/tasks/batch", json={"tasks": tasks}) as r:
            assert r.status == 201, await r.text()

    async def get(self, path: str) -> Any:
        """GET a JSON resource."""
        async with self.session.get(path) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def close(self) -> None:
        """Release the connection pool."""
        await self.session.close()
