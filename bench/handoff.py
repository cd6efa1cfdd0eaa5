"""What a start-in-submit hand-off would gain: ``python -m bench.handoff``.

Issue 16's enqueue -> start target is measured from before the submit call to the
handler's first line. taskd's idle worker wakes from a blocking XREADGROUP holding an entry
id and then runs its start script (a second round trip) before the handler runs; huey's
wakes from BRPOP holding the message. This prototype measures three shapes of that path
with minimal scripts of the same write sets as taskd's (no taskd code in the way), the
worker in its own process as in the peer harness, tasks 5 ms apart:

- ``start-after-wake`` (taskd today): the submit script writes the task, its stream entry,
  its ``created`` event and a counter; the worker's blocking read wakes with the entry and
  its start script (read the hash, mark it processing, the ``started`` event, counters)
  returns the task;
- ``hand-off``: the same submit script also starts the task for a registered idle
  worker: it reads the entry for that worker's consumer (so a crash is reclaimed as
  today), writes the start and appends the task to the worker's inbox stream, which the
  worker's blocking read watches beside the ready stream;
- ``lpush-brpop`` (huey's shape): LPUSH of the message, BRPOP in the worker.

bench/PROFILE.md reports what it shows: whether the hand-off alone would meet the target.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from bench.cli import _run
from bench.server import redis_target

MODES = ("start-after-wake", "hand-off", "lpush-brpop")
SPACING_S = 0.005

SUBMIT = """
local sid = redis.call('XADD', KEYS[1], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'name', 'probe', 'task_type', 'probe',
  'queue', 'default', 'priority', '5', 'payload', ARGV[2], 'status', 'pending', 'sid', sid,
  'progress', '0', 'retry_count', '0', 'max_retries', '3', 'timeout_s', '300',
  'created_at', '1', 'updated_at', '1', 'attempt', '0')
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'kind', 'created', 'id', ARGV[1],
  'status', 'pending', 'name', 'probe', 'task_type', 'probe', 'queue', 'default',
  'priority', '5')
redis.call('HINCRBY', KEYS[4], 'pending', 1)
"""
HAND_OFF = """
local consumer = redis.call('SPOP', KEYS[5])
if consumer then
  redis.call('XREADGROUP', 'GROUP', 'g', consumer, 'COUNT', 1, 'STREAMS', KEYS[1], '>')
  redis.call('HSET', KEYS[2], 'status', 'processing', 'worker', consumer, 'attempt', '1',
    'started_at', '1', 'updated_at', '1')
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'kind', 'started', 'id', ARGV[1],
    'status', 'processing', 'worker', consumer, 'attempt', '1')
  redis.call('HINCRBY', KEYS[4], 'pending', -1)
  redis.call('HINCRBY', KEYS[4], 'processing', 1)
  redis.call('XADD', 'inbox:' .. consumer, 'MAXLEN', '~', 100, '*', 'id', ARGV[1],
    'payload', ARGV[2])
end
"""
START = """
local flat = redis.call('HGETALL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'processing', 'worker', 'w1', 'attempt', '1',
  'started_at', '1', 'updated_at', '1')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'kind', 'started', 'id', ARGV[1],
  'status', 'processing', 'worker', 'w1', 'attempt', '1')
redis.call('HINCRBY', KEYS[3], 'pending', -1)
redis.call('HINCRBY', KEYS[3], 'processing', 1)
return flat
"""
CONSUMER = "w1"
INBOX = "inbox:" + CONSUMER


def now() -> float:
    """CLOCK_MONOTONIC, shared by the submitter's and the worker's processes."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


async def worker(url: str, mode: str, n: int) -> None:
    """Handle ``n`` tasks; print their submit -> start delays (ms), one per line."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    blocking = aioredis.Redis.from_url(url, decode_responses=True)
    start = client.register_script(START)
    for stream in ("ready", INBOX):
        await client.xgroup_create(stream, "g", "$", mkstream=True)
    await client.set("worker_ready", 1)
    lags: list[float] = []
    handed = 0  # tasks that came started, through the inbox
    while len(lags) < n:
        if mode == "lpush-brpop":
            item = await blocking.brpop(["list"], timeout=5)
            if item:
                lags.append(now() - float(item[1]))
            continue
        streams: dict[Any, Any] = {"ready": ">"}
        if mode == "hand-off":
            streams[INBOX] = ">"
            await client.sadd("idle", CONSUMER)  # as one pipeline with the read in a build
        read: Any = await blocking.xreadgroup("g", CONSUMER, streams, count=8, block=5000)
        for stream, entries in read or []:
            for _, fields in entries:
                if stream == INBOX:
                    lags.append(now() - float(fields["payload"]))
                    handed += 1
                    continue
                flat = await start(
                    keys=["task:" + fields["id"], "events", "stats"], args=[fields["id"]]
                )
                task = dict(zip(flat[::2], flat[1::2], strict=True))
                lags.append(now() - float(task["payload"]))
        if mode == "hand-off":
            await client.srem("idle", CONSUMER)  # woken by the ready stream: not idle now
    print(handed, *(f"{lag * 1000:.4f}" for lag in lags), sep="\n")
    await client.aclose()
    await blocking.aclose()


async def one(url: str, mode: str, n: int) -> tuple[int, list[float]]:
    """Submit ``n`` tasks ``SPACING_S`` apart to a worker process: how many it got started
    through its inbox, and their delays in ms."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    await client.flushdb()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.handoff", "--worker", mode, "--redis-url", url,
        "--tasks", str(n), stdout=subprocess.PIPE,
    )  # fmt: skip
    while not await client.get("worker_ready"):  # noqa: ASYNC110 - another process sets it
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # the worker is blocked in its read
    submit = client.register_script(SUBMIT + (HAND_OFF if mode == "hand-off" else ""))
    first = now()
    for i in range(n):
        delay = first + i * SPACING_S - now()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = now()
        if mode == "lpush-brpop":
            await client.lpush("list", repr(sent))
        else:
            keys = ["ready", f"task:{i}", "events", "stats", "idle"]
            await submit(keys=keys, args=[str(i), repr(sent)])
    out, _ = await child.communicate()
    await client.flushdb()
    await client.aclose()
    handed, *delays = out.decode().split()
    return int(handed), [float(delay) for delay in delays]


async def compare(url: str | None, n: int, rounds: int) -> None:
    """Every mode in turn, ``rounds`` times; p50/p99 per round and their medians."""
    async with redis_target(url) as target:
        print(f"{target.version}, {n} tasks {SPACING_S * 1000:.0f} ms apart per round")
        results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        for _ in range(rounds):
            for mode in MODES:
                handed, delays = await one(target.url, mode, n)
                ms = sorted(delays)
                p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]
                results[mode].append((p50, p99))
                print(f"{mode:18} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  ({handed} handed over)")
        print("medians over rounds:")
        for mode, rows in results.items():
            p50 = statistics.median(r[0] for r in rows)
            p99 = statistics.median(r[1] for r in rows)
            print(f"{mode:18} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms")


def main() -> None:
    """Command line: the comparison, or (internally) one worker process."""
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__)
    parser.add_argument("--redis-url", help="a loopback Redis (default: the embedded one)")
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _run(worker(args.redis_url, args.worker, args.tasks))
    else:
        _run(compare(args.redis_url, args.tasks, args.rounds))


if __name__ == "__main__":
    main()
