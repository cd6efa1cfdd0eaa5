"""What the Python clients say when their Redis URL leads nowhere useful: one clear
taskd error, no redis-py exception, and nothing left running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import taskd

EMAIL = {"to": "user@example.com", "subject": "Hi"}


@pytest.fixture
async def http_port(free_port: int) -> AsyncIterator[int]:
    """A real HTTP server (what a user gets by giving taskd's own port as the Redis URL)."""
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", free_port)
    await site.start()
    yield free_port
    await runner.cleanup()


async def test_a_server_that_is_not_redis_is_a_clear_taskd_error(http_port: int) -> None:
    """A URL naming an HTTP server raises TaskdError saying it does not speak the Redis
    protocol, from Client and SyncClient alike (was redis-py's InvalidResponse)."""
    url = f"redis://127.0.0.1:{http_port}/0"
    client = taskd.Client(url)
    with pytest.raises(taskd.TaskdError, match="Redis protocol"):
        await client.submit("email", EMAIL)
    await client.close()
    sync = taskd.SyncClient(url)
    with pytest.raises(taskd.TaskdError, match="Redis protocol"):
        await asyncio.to_thread(sync.submit, "email", EMAIL)
    sync.close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "127.0.0.1:6379", "redis://h:port/0"])
async def test_a_malformed_url_is_a_clear_taskd_error(url: str) -> None:
    """A URL redis-py cannot parse raises TaskdError naming the URL (was a bare
    ValueError from redis-py), and the client can be closed afterwards."""
    client = taskd.Client(url)
    with pytest.raises(taskd.TaskdError, match="Redis URL"):
        await client.stats()
    await client.close()


def _client_threads() -> int:
    return sum(t.name == "taskd-client" for t in threading.enumerate())


def test_unreachable_redis_leaves_no_thread_behind(free_port: int) -> None:
    """Every SyncClient call that fails because Redis is unreachable raises
    RedisUnavailable and stops the event-loop thread it started (each failed call used to
    leave one running, for ever)."""
    before = _client_threads()
    client = taskd.SyncClient(f"redis://127.0.0.1:{free_port}/0")
    for _ in range(5):
        with pytest.raises(taskd.RedisUnavailable):
            client.get("0" * 32)
    assert _client_threads() == before
    client.close()
