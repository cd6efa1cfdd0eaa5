"""What no engine speed-up can beat on this machine: ``python -m bench.floor``.

Measures, against the same Redis the suite uses (the embedded server, or ``--redis-url``):

- the round trip of one PING through redis-py (taskd's client) and through a bare asyncio
  stream, and the Redis CPU each request costs however small: the floor under every
  awaited call, and so under submit -> start latency (two calls: the blocking read that
  wakes the pool, then the start script);
- the Redis CPU per batch-submitted task with the AOF on (taskd's default, ``everysec``)
  and off: the durable log's share of the enqueue cost;
- what one created task must cost Redis whatever the implementation: the execution time
  of a bare LPUSH (huey's enqueue), of a script writing only a task hash and a stream entry,
  of one that also writes the ``created`` event and a counter (the least DESIGN.md allows:
  every transition atomic, with its event and its counters), and of taskd's enqueue script,
  each called once per task from one blocking client, as per-call enqueues are made;
- how long 100 bare coroutines take to sleep 10 ms twenty times each on this event loop,
  with no Redis and no pool: the ceiling of the 10 ms workload for any asyncio worker.

Bench/PROFILE.md explains how these bound the targets the suite does not meet.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import redis
import redis.asyncio as aioredis

from bench.cli import _run
from bench.engine import bench_client
from bench.percall import sync_bench_client
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


# The least a created task can write under DESIGN.md: its hash and its stream entry (the
# task and its delivery), then its event and a counter in the same atomic step.
HASH_AND_ENTRY = """
local now = redis.call('TIME')[1]
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'task_type', ARGV[2], 'payload', ARGV[3],
  'status', 'pending', 'priority', '5', 'created_at', now)
return redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
"""
WITH_EVENT_AND_COUNTER = (
    HASH_AND_ENTRY.replace("return redis.call", "local sid = redis.call")
    + """
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'kind', 'created', 'ts', now,
  'id', ARGV[1], 'status', 'pending', 'task_type', ARGV[2])
redis.call('HINCRBY', KEYS[4], 'pending', 1)
return sid
"""
)
CREATE_CALLS = 3_000


def create_costs(url: str, n: int = CREATE_CALLS) -> dict[str, float]:
    """Per-call Redis execution time (µs, INFO commandstats) and calls/s from one blocking
    client for: LPUSH of a 300-byte message, the two minimal create scripts above, and
    ``SyncClient.submit``."""
    plain = redis.Redis.from_url(url)  # blocking, as huey's client and SyncClient's
    found: dict[str, float] = {}

    def timed(label: str, command: str, call: Callable[[int], object]) -> None:
        call(-1)
        plain.config_resetstat()
        started = time.perf_counter()
        for i in range(n):
            call(i)
        elapsed = time.perf_counter() - started
        stats = plain.info("commandstats")[f"cmdstat_{command}"]
        found[f"{label}_exec_us"] = round(float(stats["usec_per_call"]), 1)
        found[f"{label}_per_s"] = round(n / elapsed)

    message = b"x" * 300
    timed("lpush", "lpush", lambda i: plain.lpush("floor:list", message))
    payload = b'{"i": 1}'
    for label, source in (("hash_entry", HASH_AND_ENTRY), ("with_event", WITH_EVENT_AND_COUNTER)):
        sha = plain.script_load(source)
        timed(
            label,
            "evalsha",
            lambda i, sha=sha: plain.evalsha(
                sha, 4, f"floor:t:{i}", "floor:s", "floor:e", "floor:n", str(i), "x", payload
            ),
        )
    with sync_bench_client(url) as client:
        timed("sync_submit", "evalsha", lambda i: client.submit("bench.noop", {"i": i}))
    plain.flushdb()
    plain.close()
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
        found |= await asyncio.to_thread(create_costs, target.url)
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
