"""The TCP listener: a cap on open connections and a deadline for a request's headers.

aiohttp's server has neither: a client that connects and sends nothing, or sends half a
request line, holds a connection and a descriptor forever, so a thousand of them exhaust
the process. Each connection's protocol is wrapped here, which sees the bytes before
aiohttp does: over ``max_connections`` a new connection gets a JSON 503 and is closed;
a connection whose first request's headers are not complete within ``header_timeout_s``
gets a JSON 408 and is closed. Later requests on a kept-alive connection are bounded by
aiohttp's keep-alive timeout. Public deployments still belong behind a reverse proxy
(see docs/security.md); these bounds keep a directly exposed daemon alive.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, cast

from aiohttp import web

from taskd.http.shapes import dumps

_END_OF_HEADERS: Final = b"\r\n\r\n"


def _reply(status: str, code: str, message: str) -> bytes:
    body = dumps({"error": {"code": code, "message": message, "details": None}}).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    if status.startswith("503"):
        head += "Retry-After: 1\r\n"
    return head.encode() + b"\r\n" + body


BUSY: Final = _reply("503 Service Unavailable", "busy", "too many connections; try again later")
SLOW: Final = _reply("408 Request Timeout", "request_timeout", "request headers took too long")


class Gate:
    """The connections of one listener: how many are open, and the limits."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.refused = 0
        self.timed_out = 0


class GuardedProtocol(asyncio.Protocol):
    """Forwards to aiohttp's protocol once the connection is admitted; times its headers."""

    def __init__(self, inner: asyncio.Protocol, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate
        self.admitted = False
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection, or answer 503 and close it."""
        # A stream transport (uvloop's does not subclass asyncio.Transport, so no isinstance).
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if self.gate.open >= self.gate.max_connections:
            self.gate.refused += 1
            transport.write(BUSY)
            transport.close()
            return
        self.admitted = True
        self.gate.open += 1
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.gate.header_timeout_s, self._too_slow)
        self.inner.connection_made(transport)

    def _too_slow(self) -> None:
        self.timer = None
        self.gate.timed_out += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(SLOW)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Pass the bytes on; stop the clock once the first header block is complete."""
        if not self.admitted:
            return
        if self.timer is not None:
            seen = self.tail + data
            if _END_OF_HEADERS in seen:
                self.timer.cancel()
                self.timer = None
            else:
                self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Forwarded."""
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        """Free the slot; forwarded."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.admitted:
            self.admitted = False
            self.gate.open -= 1
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """Forwarded (flow control)."""
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        """Forwarded (flow control)."""
        if self.admitted:
            self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections pass through a :class:`Gate`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: Gate, **kw: Any) -> None:
        super().__init__(runner, host, port, **kw)
        self.gate = gate

    async def start(self) -> None:
        """Listen like TCPSite, with each aiohttp protocol wrapped."""
        self._runner._reg_site(self)  # what BaseSite.start does
        server = self._runner.server
        assert server is not None
        handler = server

        def factory() -> asyncio.Protocol:
            return GuardedProtocol(handler(), self.gate)

        self._server = await asyncio.get_running_loop().create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
