"""The api_call task against a local aiohttp server, and its SSRF guard.

Only loopback ever receives traffic: refused addresses (10.0.0.1, 169.254.169.254) are
refused by the guard before any connection is attempted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from taskd.config import Settings
from taskd.engine.registry import Registry
from taskd.errors import Fail, Retry, ValidationError
from taskd.model import Status, make_spec
from taskd.store import Store
from tests.handlertools import call, finished, running_pool, settings_at

BIG = 5 << 20


class Remote:
    """A local API: counts hits per path; some paths fail until called often enough."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/flaky", self.flaky)
        app.router.add_get("/missing", self.missing)
        app.router.add_get("/busy", self.busy)
        app.router.add_get("/big", self.big)
        app.router.add_get("/hop", self.hop)
        app.router.add_get("/to-internal", self.to_internal)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        self.hits["echo"] += 1
        body = await request.json() if request.can_read_body else None
        return web.json_response(
            {
                "method": request.method,
                "json": body,
                "agent": request.headers.get("User-Agent"),
                "x": request.headers.get("X-Trace"),
            }
        )

    async def flaky(self, request: web.Request) -> web.Response:
        self.hits["flaky"] += 1
        if self.hits["flaky"] == 1:
            return web.Response(status=503, text="warming up")
        return web.json_response({"ok": True})

    async def missing(self, request: web.Request) -> web.Response:
        self.hits["missing"] += 1
        return web.Response(status=404, text="no such order")

    async def busy(self, request: web.Request) -> web.Response:
        self.hits["busy"] += 1
        return web.Response(status=429, headers={"Retry-After": "7"}, text="slow down")

    async def big(self, request: web.Request) -> web.StreamResponse:
        self.hits["big"] += 1
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            for _ in range(BIG // 65536):
                await response.write(b"x" * 65536)
        except (ConnectionResetError, RuntimeError):
            pass  # the client stopped reading at its cap and closed the connection
        return response

    async def hop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{self.url}/echo")

    async def to_internal(self, request: web.Request) -> web.Response:
        self.hits["to-internal"] += 1
        raise web.HTTPFound("http://10.0.0.1/admin")


@pytest.fixture
async def remote() -> AsyncIterator[Remote]:
    """The local API on a free loopback port."""
    remote = Remote()
    runner = web.AppRunner(remote.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    remote.url = f"http://{host}:{port}"
    try:
        yield remote
    finally:
        await runner.cleanup()


@pytest.fixture
def loopback_ok(tmp_path: Path) -> Settings:
    """Settings that let api_call reach 127.0.0.1 (and nothing else non-public)."""
    return settings_at(
        tmp_path, api_call={"allow_hosts": ("127.0.0.1",), "max_response_bytes": 65536}
    )


async def test_post_json_returns_parsed_response(remote: Remote, loopback_ok: Settings) -> None:
    """A POST with json and headers completes with status, headers and the parsed body."""
    payload = {
        "url": f"{remote.url}/echo",
        "method": "post",
        "json": {"n": 1},
        "headers": {"X-Trace": "abc"},
    }
    result, _, progress = await call("api_call", payload, loopback_ok)
    assert result["status"] == 200
    assert result["body"] == {
        "method": "POST",
        "json": {"n": 1},
        "agent": result["body"]["agent"],
        "x": "abc",
    }
    assert result["body"]["agent"].startswith("taskd/")
    assert result["headers"]["Content-Type"].startswith("application/json")
    assert result["truncated"] is False
    assert progress.percents[-1] == 100


async def test_503_is_retried_then_completes_in_the_pool(
    remote: Remote, loopback_ok: Settings, store: Store, queue: str
) -> None:
    """A 503 makes the pool retry; the second attempt succeeds."""
    async with running_pool(store, queue, loopback_ok):
        ((task, _),) = await store.submit(
            [make_spec("api_call", {"url": f"{remote.url}/flaky"}, queue=queue, max_retries=2)]
        )
        done = await finished(store, task.id)
    assert done.status == Status.COMPLETED, done.error
    assert done.retry_count == 1
    assert done.result["body"] == {"ok": True}
    assert remote.hits["flaky"] == 2


async def test_404_fails_at_once_in_the_pool(
    remote: Remote, loopback_ok: Settings, store: Store, queue: str
) -> None:
    """A 404 is final: the task fails on its first attempt with the status in the error."""
    async with running_pool(store, queue, loopback_ok):
        ((task, _),) = await store.submit(
            [make_spec("api_call", {"url": f"{remote.url}/missing"}, queue=queue, max_retries=3)]
        )
        done = await finished(store, task.id)
    assert done.status == Status.FAILED
    assert done.retry_count == 0
    assert "HTTP 404" in (done.error or "")
    assert "no such order" in (done.error or "")
    assert remote.hits["missing"] == 1


async def test_expect_status_turns_a_404_into_success(
    remote: Remote, loopback_ok: Settings
) -> None:
    """With expect_status listing 404, a 404 completes the task."""
    result, _, _ = await call(
        "api_call", {"url": f"{remote.url}/missing", "expect_status": [404]}, loopback_ok
    )
    assert result["status"] == 404
    assert result["body"] == "no such order"


async def test_429_retries_after_the_servers_delay(remote: Remote, loopback_ok: Settings) -> None:
    """A 429 asks for a retry after the Retry-After seconds."""
    with pytest.raises(Retry, match="429") as info:
        await call("api_call", {"url": f"{remote.url}/busy"}, loopback_ok)
    assert info.value.delay_s == 7.0


async def test_response_body_is_capped(remote: Remote, loopback_ok: Settings) -> None:
    """A 5 MiB answer is cut at max_response_bytes and marked truncated."""
    result, _, _ = await call("api_call", {"url": f"{remote.url}/big"}, loopback_ok)
    assert result["truncated"] is True
    assert result["size"] == 65536
    assert result["body"] == "x" * 65536


async def test_redirects_are_followed(remote: Remote, loopback_ok: Settings) -> None:
    """A redirect to an allowed address is followed and counted."""
    result, _, _ = await call("api_call", {"url": f"{remote.url}/hop"}, loopback_ok)
    assert result["redirects"] == 1
    assert result["url"].endswith("/echo")


async def test_redirect_to_a_private_address_is_refused(
    remote: Remote, loopback_ok: Settings
) -> None:
    """The guard checks every hop: a redirect to 10.0.0.1 fails without retry."""
    with pytest.raises(Fail, match=r"10\.0\.0\.1.*private"):
        await call("api_call", {"url": f"{remote.url}/to-internal"}, loopback_ok)
    assert remote.hits["to-internal"] == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/echo", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:127.0.0.1]:{port}/echo", "loopback"),
        ("http://localhost:{port}/echo", "loopback"),
    ],
)
async def test_guard_refuses_non_public_addresses(
    remote: Remote, tmp_path: Path, url: str, reason: str
) -> None:
    """By default loopback, private, link-local and names resolving to them are refused."""
    port = remote.url.rsplit(":", 1)[1]
    with pytest.raises(Fail, match=reason):
        await call("api_call", {"url": url.format(port=port)}, settings_at(tmp_path))
    assert sum(remote.hits.values()) == 0


async def test_allow_private_never_opens_the_metadata_address(tmp_path: Path) -> None:
    """allow_private admits loopback and private ranges, but not 169.254.169.254."""
    settings = settings_at(tmp_path, api_call={"allow_private": True})
    with pytest.raises(Fail, match="link-local"):
        await call("api_call", {"url": "http://169.254.169.254/"}, settings)


async def test_allow_private_admits_loopback_names(remote: Remote, tmp_path: Path) -> None:
    """With allow_private, a name resolving to loopback is reached."""
    port = remote.url.rsplit(":", 1)[1]
    settings = settings_at(tmp_path, api_call={"allow_private": True})
    result, _, _ = await call("api_call", {"url": f"http://localhost:{port}/echo"}, settings)
    assert result["status"] == 200


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "http://10.1.2.3/", "http://[::1]/", "http://2130706433/"]
)
def test_literal_refused_address_is_a_submit_time_error(url: str) -> None:
    """A literal address the guard refuses is a validation error naming payload.url."""
    with pytest.raises(ValidationError) as info:
        Registry.from_modules([]).check_payload("api_call", {"url": url})
    assert info.value.field == "payload.url"


def test_submit_time_check_follows_the_configured_policy(tmp_path: Path) -> None:
    """With the registry's settings allowing private addresses, 10.x URLs are accepted."""
    settings = settings_at(tmp_path, api_call={"allow_private": True})
    Registry.from_modules([], settings=settings).check_payload(
        "api_call", {"url": "http://10.1.2.3/"}
    )


async def test_unreachable_port_is_retried(loopback_ok: Settings, free_port: int) -> None:
    """A refused connection is a network error and asks for a retry."""
    with pytest.raises(Retry, match=r"127\.0\.0\.1"):
        await call("api_call", {"url": f"http://127.0.0.1:{free_port}/"}, loopback_ok)


def test_missing_url_is_required_not_malformed() -> None:
    """A payload without url says the url is required (not that it must be a URL)."""
    with pytest.raises(ValidationError) as info:
        Registry.from_modules([]).check_payload("api_call", {"method": "GET"})
    assert (info.value.field, str(info.value)) == ("payload.url", "payload.url: is required")
