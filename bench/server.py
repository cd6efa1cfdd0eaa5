"""The Redis every workload and every peer runs against, and how it is reset between them."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.procs import check_loopback
from taskd.embedded import EmbeddedRedis


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis listens and what it is."""

    url: str
    version: str
    embedded: bool


@asynccontextmanager
async def redis_target(url: str | None, work_dir: Path | None = None) -> AsyncIterator[RedisTarget]:
    """The given loopback Redis, else the embedded server (AOF on, TCP) for this run."""
    if url:
        check_loopback(url)
        yield RedisTarget(url, await server_version(url), embedded=False)
        return
    with tempfile.TemporaryDirectory(prefix="taskd-bench-", dir=work_dir) as tmp:
        async with EmbeddedRedis(Path(tmp) / "redis", unix_socket=False) as server:
            yield RedisTarget(server.url, await server_version(server.url), embedded=True)


async def server_version(url: str) -> str:
    """ "redis 7.2.4" or "valkey 8.1.1"."""
    info = await _info(url, "server")
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"


async def flush(url: str) -> None:
    """Empty the database between workloads, so none inherits another's keys."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def used_memory(url: str) -> int:
    """Bytes Redis has allocated for data (INFO memory used_memory)."""
    return int((await _info(url, "memory"))["used_memory"])


async def cpu_seconds(url: str) -> float:
    """CPU time the Redis server has used so far (user + system, all its threads)."""
    info = await _info(url, "cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _info(url: str, section: str) -> dict[str, Any]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        info: dict[str, Any] = await client.info(section)
    finally:
        await client.aclose()
    return info
