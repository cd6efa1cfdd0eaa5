"""DNS rebinding: an open (tokenless) server answers only to Host names that are its own."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from taskd.http.guard import HostCheck, host_name
from taskd.store import Store
from tests.test_http_support import Daemon, serve_app

EVIL = "rebind.evil.example"


def _foreign(port: int) -> dict[str, str]:
    return {"Host": f"{EVIL}:{port}", "Origin": f"http://{EVIL}:{port}"}


async def test_rebound_host_is_refused_with_421_on_every_route(store: Store, queue: str) -> None:
    """Writes, reads, the dashboard, assets, /ws and unknown paths all answer JSON 421."""
    async with serve_app(store) as client:
        port = client.port
        assert port is not None
        body = {"task_type": "email", "queue": queue, "payload": {"to": "a@example.com"}}
        write = await client.post("/api/tasks", json=body, headers=_foreign(port))
        assert write.status == 421
        assert (await write.json())["error"]["code"] == "misdirected_request"
        for path in ("/api/tasks", "/", "/assets/app.js", "/ws", "/docs", "/nope"):
            reply = await client.get(path, headers=_foreign(port))
            assert reply.status == 421, path
            assert reply.content_type == "application/json", path
        purge = await client.post(
            f"/api/queues/{queue}/purge", json={"confirm": True}, headers=_foreign(port)
        )
        assert purge.status == 421
        assert (await store.stats(queue))["total"] == 0


async def test_loopback_and_listed_hosts_are_answered(store: Store) -> None:
    """localhost, 127.0.0.1, [::1] and a server.allowed_hosts entry pass the check."""
    async with serve_app(store, server__allowed_hosts="taskd.internal,*.corp.example") as client:
        port = client.port
        for host in (
            f"localhost:{port}",
            f"127.0.0.1:{port}",
            f"[::1]:{port}",
            "taskd.internal",
            f"a.corp.example:{port}",
        ):
            reply = await client.get("/api/tasks", headers={"Host": host})
            assert reply.status == 200, host
        refused = await client.get("/api/tasks", headers={"Host": "corp.example.evil.example"})
        assert refused.status == 421


async def test_servers_with_tokens_answer_any_host(store: Store) -> None:
    """With tokens (and no anonymous access) a rebinding page has no token: no Host check."""
    async with serve_app(store, auth__tokens="full-token-0123456789") as client:
        reply = await client.get(
            "/api/tasks",
            headers={"Host": EVIL, "Authorization": "Bearer full-token-0123456789"},
        )
        assert reply.status == 200


def test_host_check_accepts_the_address_connected_to() -> None:
    """A server bound to every interface answers to the IP literal the client connected to."""
    check = HostCheck("0.0.0.0", ())
    assert check.accepts("192.0.2.7:8000", "192.0.2.7")
    assert check.accepts("192.0.2.7", "::ffff:192.0.2.7")
    assert not check.accepts("192.0.2.8:8000", "192.0.2.7")
    assert not check.accepts(f"{EVIL}:8000", "192.0.2.7")
    assert host_name("[::1]:8000") == "::1"
    assert host_name("Example.COM.:80") == "example.com"


@pytest.mark.slow
async def test_daemon_refuses_a_rebound_host(redis_url: str, tmp_path: Path) -> None:
    """A real `taskd serve` with the default (tokenless, loopback) setup refuses the rebind."""
    daemon = Daemon(tmp_path / "d", redis_url)
    try:
        await daemon.ready()
        port = daemon.port
        async with aiohttp.ClientSession() as session:
            body = {"task_type": "email", "payload": {"to": "a@example.com"}}
            async with session.post(
                f"{daemon.url}/api/tasks", json=body, headers=_foreign(port)
            ) as reply:
                assert reply.status == 421
            async with session.get(f"{daemon.url}/api/tasks") as ok:
                assert ok.status == 200
    finally:
        daemon.close()
