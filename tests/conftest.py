"""Shared fixtures: one real Redis server per test session (the embedded binary).

Each test gets its own random queue name, so tests never see each other's tasks.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from taskd.embedded import EmbeddedRedis
from taskd.store import Store
from tests.topologies import start_cluster


@pytest.fixture(scope="session")
def redis_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data directory of the session's Redis server."""
    return tmp_path_factory.mktemp("redis")


CLUSTER = os.environ.get("TASKD_TEST_REDIS", "") == "cluster"


@pytest.fixture(scope="session")
async def redis_url(redis_dir: Path) -> AsyncIterator[str]:
    """URL of the session's real Redis: one server on a free loopback port, or with
    TASKD_TEST_REDIS=cluster a 3-master Redis Cluster of the same binary."""
    if CLUSTER:
        servers, url = await start_cluster(redis_dir)
    else:
        servers = [EmbeddedRedis(redis_dir, unix_socket=False, appendonly=False)]
        url = await servers[0].start()
    yield url
    for server in servers:
        await server.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    """A connected store (closed after the test)."""
    s = await Store.connect(redis_url)
    yield s
    await s.close()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """One headless chromium for a module of browser tests (tests.dashboard_support)."""
    from tests.dashboard_support import launch  # noqa: PLC0415 - only browser tests load playwright

    async for b in launch():
        yield b


@pytest.fixture
def queue() -> str:
    """A queue name no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout_s: float = 10.0, interval_s: float = 0.02
) -> Any:
    """Poll ``check`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {value!r})")
        await asyncio.sleep(interval_s)


@pytest.fixture
def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
