"""The daemon runs on uvloop (a dependency), whose transports do not subclass asyncio's
transport classes: the parts that look at a transport must work with them too."""

from __future__ import annotations

import asyncio

import uvloop

from taskd.http.ws import _unsent


def test_unsent_bytes_are_seen_on_a_uvloop_transport() -> None:
    """The WebSocket send budget counts bytes a uvloop transport still holds for a peer
    that does not read (an isinstance check on asyncio.WriteTransport saw none)."""

    async def main() -> tuple[int, int]:
        accepted: list[asyncio.StreamWriter] = []

        async def never_read(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)

        server = await asyncio.start_server(never_read, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        idle = _unsent(writer.transport)
        writer.write(b"x" * 20_000_000)  # far beyond what the socket buffers take
        held = _unsent(writer.transport)
        writer.transport.abort()
        for peer in accepted:
            peer.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)  # let the closes run before the loop ends
        return idle, held

    idle, held = uvloop.run(main())
    assert idle == 0
    assert held > 0
