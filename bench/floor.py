"""What no engine speed-up can beat on this machine: ``python -m bench.floor``.

Measures, against the same Redis the suite uses (the embedded server, or ``--redis-url``):

- the round trip of one PING through redis-py (taskd's client) and through a bare asyncio
  stream, and the Redis CPU each request costs however small: the floor under every
  awaited call, and so under submit -> start latency (two calls: the blocking read that
  wakes the pool, then the start script);
- the Redis CPU per batch-submitted task with the AOF on (taskd's default, ``everysec``)
  and off: the durable log's share of the enqueue cost;
- how long 100 bare coroutines take to sleep 10 ms twenty times each on this event loop,
  with no Redis and no pool: the ceiling of the 10 ms workload for any asyncio worker.

Bench/PROFILE.md explains how these bound the targets the suite does not meet.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any
from urllib.parse import urlparse

import redis.asyncio as aioredis

from bench.cli import _run
from bench.engine import bench_client
from bench.server import cpu_seconds, flush, redis_target
from taskd.log import configure_logging
from taskd.store.connect import _clients

PINGS = 20_000


async def round_trips(url: str) -> dict[str, float]:
    """Mean PING round trip (µs) via redis-py and a bare stream; Redis CPU per request."""
    client, blocking, _ = _clients(url, False)
    await client.ping()
    cpu = await cpu_seconds(url)
    started = time.perf_counter()
    for _ in range(PINGS):
        await client.ping()
    redis_py_us = (time.perf_counter() - started) / PINGS * 1e6
    redis_cpu_us = (await cpu_seconds(url) - cpu) / PINGS * 1e6
    await client.aclose()
    await blocking.aclose()
    where = urlparse(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    started = time.perf_counter()
    for _ in range(PINGS):
        writer.write(b"*1\r\n$4\r\nPING\r\n")
        await reader.readline()
    stream_us = (time.perf_counter() - started) / PINGS * 1e6
    writer.close()
    return {
        "ping_redis_py_us": round(redis_py_us, 1),
        "ping_bare_stream_us": round(stream_us, 1),
        "redis_cpu_per_request_us": round(redis_cpu_us, 1),
    }


async def enqueue_cpu(url: str, n: int = 20_000) -> dict[str, float]:
    """Redis CPU per task of submit_many (1,000 per call), AOF as configured, then off."""
    found: dict[str, float] = {}
    admin: Any = aioredis.Redis.from_url(url, decode_responses=True)
    aof = (await admin.config_get("appendonly"))["appendonly"]
    try:
        for label, setting in (("aof_" + aof, aof), ("aof_no", "no")):
            await admin.config_set("appendonly", setting)
            await flush(url)
            async with bench_client(url) as client:
                await client.submit_many([{"task_type": "bench.noop"}])
                cpu = await cpu_seconds(url)
                for _ in range(0, n, 1000):
                    await client.submit_many([{"task_type": "bench.noop"}] * 1000)
                found[f"enqueue_redis_cpu_us_{label}"] = round(
                    (await cpu_seconds(url) - cpu) / n * 1e6, 1
                )
    finally:
        await admin.config_set("appendonly", aof)
        # Turning the AOF on rewrites it in the background: let that finish first.
        for _ in range(200):  # at most 10 s
            if not (await admin.info("persistence")).get("aof_rewrite_in_progress"):
                break
            await asyncio.sleep(0.05)
        await admin.aclose()
    return found


async def timer_floor(rounds: int = 5) -> dict[str, float]:
    """The 10 ms workload (100 workers, 2,000 tasks: 20 waves) with nothing but the sleeps:
    median time and its fraction of the ideal 200 ms."""

    async def worker() -> None:
        for _ in range(20):
            await asyncio.sleep(0.01)

    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(100)))
        took.append(time.perf_counter() - started)
    median = sorted(took)[rounds // 2]
    return {
        "sleeps_10ms_x20_x100_ms": round(median * 1e3, 1),
        "sleeps_fraction_of_ideal": round(0.2 / median, 3),
    }


async def measure(url: str | None) -> None:
    """Print every floor figure as ``name value`` lines."""
    async with redis_target(url) as target:
        print(f"redis {target.version} at {target.url}")
        found = await round_trips(target.url) | await enqueue_cpu(target.url)
        for name, value in (found | await timer_floor()).items():
            print(f"{name:34} {value}")


def main() -> None:
    """Parse and run."""
    p = argparse.ArgumentParser(prog="python -m bench.floor")
    p.add_argument("--redis-url")
    args = p.parse_args()
    configure_logging("json", "warning")
    _run(measure(args.redis_url))


if __name__ == "__main__":
    main()
