"""The listener's bounds: a deadline for request headers and a cap on open connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.test_http_support import Daemon

pytestmark = pytest.mark.slow


async def _read_all(reader: asyncio.StreamReader, timeout_s: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection (fails on the deadline)."""
    return await asyncio.wait_for(reader.read(), timeout_s)


async def test_silent_and_half_sent_requests_are_closed_with_408(
    redis_url: str, tmp_path: Path
) -> None:
    """A connection that sends nothing, or half a request, is answered 408 and closed once
    server.header_timeout_s has passed; a complete request is served."""
    daemon = Daemon(tmp_path / "d", redis_url, env={"TASKD_HEADER_TIMEOUT_S": "0.5"})
    try:
        await daemon.ready()
        silent = await asyncio.open_connection("127.0.0.1", daemon.port)
        half = await asyncio.open_connection("127.0.0.1", daemon.port)
        half[1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for reader, writer in (silent, half):
            answer = await _read_all(reader)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b'"request_timeout"' in answer
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        daemon.close()


async def test_connections_over_the_cap_get_503_and_slots_come_back(
    redis_url: str, tmp_path: Path
) -> None:
    """With server.max_connections = 3, a fourth connection is answered 503 and closed;
    once one closes, a new one is served."""
    daemon = Daemon(tmp_path / "d", redis_url, env={"TASKD_MAX_CONNECTIONS": "3"})
    try:
        await daemon.ready()
        held = [await asyncio.open_connection("127.0.0.1", daemon.port) for _ in range(3)]
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        answer = await _read_all(reader)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"Retry-After: 1" in answer
        writer.close()
        for _, w in held:
            w.close()
            await w.wait_closed()

        async def served() -> bool:
            r, w = await asyncio.open_connection("127.0.0.1", daemon.port)
            w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            ok = (await _read_all(r)).startswith(b"HTTP/1.1 200")
            w.close()
            return ok

        deadline = asyncio.get_running_loop().time() + 10
        while not await served():
            assert asyncio.get_running_loop().time() < deadline
    finally:
        daemon.close()
