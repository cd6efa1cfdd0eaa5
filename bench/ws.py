"""The WebSocket workload: many /ws clients on one daemon while tasks run at a steady rate.

A few sampling clients (aiohttp) parse every message and time each event against its
``ts`` (Redis's clock at the transition, same host). The rest are raw sockets that only
count bytes, so the benchmark's own CPU does not limit what the daemon can fan out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

import aiohttp
import orjson

from bench.daemon import Serve, Skipped
from bench.engine import bench_client
from bench.procs import cpu_seconds
from bench.stats import latency_ms

SAMPLERS = 4
CONNECT_BATCH = 50


class RawClient(asyncio.Protocol):
    """A WebSocket client that upgrades, then discards what it receives."""

    def __init__(self, host: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.received = 0
        self.ready = asyncio.Event()
        self.lost = False
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the upgrade request."""
        self.transport = transport
        cast(asyncio.WriteTransport, transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        """Count bytes; the first snapshot message means the client is subscribed."""
        self.received += len(data)
        if not self.ready.is_set() and b"snapshot" in data:
            self.ready.set()

    def connection_lost(self, exc: Exception | None) -> None:
        """The daemon closed us (a dropped slow client) or we closed."""
        self.lost = True
        self.ready.set()


@dataclass
class Sampler:
    """A parsing client: receive time minus event ``ts`` for every event while measuring."""

    ws: aiohttp.ClientWebSocketResponse
    measuring: bool = False
    lags: list[float] = field(default_factory=list)
    events: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Read until closed."""
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            received = time.time()
            data = orjson.loads(msg.data)
            self.ready.set()
            if data.get("type") != "events" or not self.measuring:
                continue
            for event in data["events"]:
                sent = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
                self.lags.append(received - sent)
            self.events += len(data["events"])


def _same(client: RawClient) -> RawClient:
    """The protocol factory of one prepared client."""
    return client


async def drive(url: str, pid: int, per_s: int, duration_s: float) -> float:
    """Submit no-op tasks at ``per_s`` for ``duration_s``; the daemon's CPU share meanwhile."""
    tick_s = 0.05
    per_tick = max(1, int(per_s * tick_s))
    async with bench_client(url) as client:
        await client.submit_many([{"task_type": "bench.noop"}])
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        for tick in range(int(duration_s / tick_s)):
            delay = wall0 + tick * tick_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await client.submit_many([{"task_type": "bench.noop"}] * per_tick)
        return (cpu_seconds(pid) - cpu0) / (time.perf_counter() - wall0)


@dataclass
class Audience:
    """The connected clients of one measurement."""

    samplers: list[Sampler]
    raws: list[RawClient]

    @property
    def dropped(self) -> int:
        """Clients the daemon has closed on us (too slow, or an error)."""
        return sum(c.lost for c in self.raws) + sum(s.ws.closed for s in self.samplers)


@asynccontextmanager
async def audience(
    http: aiohttp.ClientSession, daemon: Serve, clients: int
) -> AsyncIterator[Audience]:
    """``clients`` subscribers (a few samplers, the rest raw), each past its snapshot."""
    host = daemon.base.removeprefix("http://")
    port = int(host.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    try:
        samplers = [
            Sampler(await http.ws_connect(f"{daemon.base}/ws", max_msg_size=0))
            for _ in range(min(SAMPLERS, clients))
        ]
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status in (404, 405):
            raise Skipped(f"/ws is not there yet (HTTP {exc.status})") from exc
        raise
    readers = [asyncio.create_task(s.run()) for s in samplers]
    raws = [RawClient(host) for _ in range(clients - len(samplers))]
    try:
        for start in range(0, len(raws), CONNECT_BATCH):
            batch = raws[start : start + CONNECT_BATCH]
            await asyncio.gather(
                *(loop.create_connection(partial(_same, c), "127.0.0.1", port) for c in batch)
            )
        async with asyncio.timeout(30):
            await asyncio.gather(
                *(c.ready.wait() for c in raws), *(s.ready.wait() for s in samplers)
            )
        yield Audience(samplers, raws)
    finally:
        for c in raws:
            if c.transport is not None:
                c.transport.close()
        for s in samplers:
            await s.ws.close()
        for job in readers:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job


async def ws_fanout(
    url: str, daemon: Serve, clients: int, per_s: int, duration_s: float
) -> dict[str, Any]:
    """CPU share without clients, then with ``clients`` connected, and the clients' lag."""
    idle_share = await drive(url, daemon.pid, per_s, duration_s)
    await asyncio.sleep(1.0)  # let the daemon finish the first phase's tasks
    async with aiohttp.ClientSession() as http, audience(http, daemon, clients) as crowd:
        for s in crowd.samplers:
            s.measuring = True
        share = await drive(url, daemon.pid, per_s, duration_s)
        await asyncio.sleep(0.5)  # the last batch is in flight
        for s in crowd.samplers:
            s.measuring = False
        dropped = crowd.dropped
    lags = [lag for s in crowd.samplers for lag in s.lags]
    result: dict[str, Any] = {f"lag_{k}": v for k, v in latency_ms(lags).items()} if lags else {}
    return result | {
        "clients": clients,
        "tasks_per_s": per_s,
        "cpu_share": round(share, 3),
        "cpu_share_without_clients": round(idle_share, 3),
        "fanout_cpu_share": round(share - idle_share, 3),
        "dropped": dropped,
        "mb_per_client": round(sum(c.received for c in crowd.raws) / max(1, clients) / 2**20, 2),
    }
