"""A TCP proxy on loopback that delays every byte by a fixed latency, each way.

This kernel has no netem, so slowness is injected in user space: each chunk read from one
side is written to the other ``delay_s`` later, order kept. It counts the bytes it holds
in flight, so a test can show that nothing piles up without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque


class LatencyProxy:
    """Listens on 127.0.0.1:<port> and forwards to ``target`` with added latency."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        delay_s: float,
        *,
        server_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.delay_s = delay_s
        self.server_ssl = server_ssl  # terminate TLS here (a rediss:// front for Redis)
        self.port = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._jobs: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Start listening; returns the port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.server_ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
        for job in list(self._jobs):
            job.cancel()
        for job in list(self._jobs):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await job

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        for reader, writer in ((client_r, server_w), (server_r, client_w)):
            job = asyncio.create_task(self._pipe(reader, writer))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        pending: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        eof = False

        async def read() -> None:
            nonlocal eof
            try:
                while chunk := await reader.read(65536):
                    pending.append((loop.time() + self.delay_s, chunk))
                    self.in_flight += len(chunk)
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                    arrived.set()
            except OSError:
                pass
            eof = True
            arrived.set()

        reading = asyncio.create_task(read())
        try:
            while True:
                if not pending:
                    if eof:
                        break
                    arrived.clear()
                    await arrived.wait()
                    continue
                due, chunk = pending[0]
                # The injected latency itself, not synchronisation.
                await asyncio.sleep(max(0.0, due - loop.time()))
                pending.popleft()
                self.in_flight -= len(chunk)
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            reading.cancel()
            self.in_flight -= sum(len(c) for _, c in pending)
            writer.close()
