"""Workloads against a real ``taskd serve`` child: RSS, the REST API, and the end-to-end run
with the submitter in another process (as peers are measured)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from bench.engine import bench_client
from bench.procs import Child, child_env, cpu_seconds, free_port, rss_mb
from bench.stats import rate
from taskd.client import Client


class Skipped(Exception):
    """A workload whose endpoint the daemon does not have (yet): noted, not an error."""


REST_QUEUE = "bench-rest"  # not served by the daemon: REST enqueue measures enqueue alone
REST_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Serve:
    """A running daemon: its process and its HTTP base URL."""

    child: Child
    base: str

    @property
    def pid(self) -> int:
        """The daemon's pid, for /proc readings."""
        return self.child.pid


@asynccontextmanager
async def serve(
    url: str, workers: int, work_dir: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[Serve]:
    """``taskd serve --redis-url URL --workers W`` with the bench handlers, ready to use.

    The per-client write rate limit is turned off: the benchmark is one client on purpose.
    ``env`` adds settings (``TASKD_...``) for one workload.
    """
    port = free_port()
    data_dir = work_dir / f"serve-{port}"
    data_dir.mkdir(parents=True)
    argv = [
        sys.executable,
        "-m",
        "taskd",
        "serve",
        "--redis-url",
        url,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--handlers",
        "bench.handlers",
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
        "--log-format",
        "json",
    ]
    extra = {"TASKD_RATE_LIMIT_PER_S": "0", **(env or {})}
    child = Child(argv, data_dir / "serve.log", child_env(**extra))
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(child, base)
        yield Serve(child, base)
    finally:
        await child.stop()


async def _wait_ready(child: Child, base: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"taskd serve exited during startup:\n{child.log_tail()}")
            try:
                async with http.get(f"{base}/readyz") as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"taskd serve not ready after {timeout_s}s:\n{child.log_tail()}")


async def _completed(client: Client) -> int:
    return int((await client.stats("default")).get("completed", 0))


async def e2e_rss(url: str, daemon: Serve, n: int) -> dict[str, float]:
    """Idle RSS, then no-op tasks/s through the daemon and its peak RSS meanwhile."""
    await asyncio.sleep(0.5)
    idle = rss_mb(daemon.pid)
    peak = idle
    async with bench_client(url) as client:
        await client.submit_many([{"task_type": "bench.noop"}] * 50)
        await _poll(lambda: _reached(client, 50), 30, "daemon warm-up")
        started = time.perf_counter()
        for start in range(0, n, 500):
            await client.submit_many([{"task_type": "bench.noop"}] * min(500, n - start))
            peak = max(peak, rss_mb(daemon.pid))
        deadline = time.perf_counter() + 300
        while await _completed(client) < n + 50:
            peak = max(peak, rss_mb(daemon.pid))
            if time.perf_counter() > deadline:
                raise TimeoutError("daemon e2e did not finish")
            await asyncio.sleep(0.01)
        ended = time.perf_counter()
    return {
        "per_s": rate(n, ended - started),
        "rss_idle_mb": round(idle, 1),
        "rss_mb": round(peak, 1),
    }


async def _reached(client: Client, n: int) -> bool:
    return await _completed(client) >= n


async def _poll(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s:.0f}s")
        await asyncio.sleep(0.01)


async def rest_single(daemon: Serve, n: int, connections: int) -> dict[str, float]:
    """``POST /api/tasks/`` requests/s over ``connections`` keep-alive connections, and the
    daemon's CPU share meanwhile (near 1.0: the daemon, not this client, is the limit)."""
    body = orjson.dumps({"task_type": "bench.noop", "queue": REST_QUEUE})
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:
        target = f"{daemon.base}/api/tasks/"

        async def post() -> None:
            async with http.post(target, data=body, headers=_JSON) as reply:
                _check(reply.status, "POST /api/tasks/")
                await reply.read()

        return await _spread(post, n, connections, daemon.pid)


async def rest_batch(daemon: Serve, n: int, connections: int = 2) -> dict[str, float]:
    """Tasks/s through ``POST /api/tasks/batch`` with 1,000 tasks per request."""
    item = {"task_type": "bench.noop", "queue": REST_QUEUE}
    body = orjson.dumps({"tasks": [item] * REST_BATCH})
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:
        target = f"{daemon.base}/api/tasks/batch"

        async def post() -> None:
            async with http.post(target, data=body, headers=_JSON) as reply:
                _check(reply.status, "POST /api/tasks/batch")
                await reply.read()

        result = await _spread(post, max(1, n // REST_BATCH), connections, daemon.pid)
        return result | {"per_s": round(result["per_s"] * REST_BATCH, 1)}


_JSON = {"Content-Type": "application/json"}


def _check(status: int, what: str) -> None:
    """201 goes on; 404/405 means the daemon has no such endpoint (skip); else an error."""
    if status in (404, 405):
        raise Skipped(f"{what} is not there yet (HTTP {status})")
    if status != 201:
        raise RuntimeError(f"{what} answered {status}")


async def _spread(
    call: Callable[[], Awaitable[None]], n: int, lanes: int, pid: int
) -> dict[str, float]:
    """Run ``call`` n times over ``lanes`` sequential loops (after a warm-up): calls/s and
    the CPU share of process ``pid`` meanwhile."""
    for _ in range(min(lanes, n)):
        await call()
    left = n

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    cpu, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(lanes)))
    elapsed = time.perf_counter() - started
    share = round((cpu_seconds(pid) - cpu) / elapsed, 3)
    return {"per_s": rate(n, elapsed), "server_cpu_share": share}
