"""One workload alone, for profilers: ``py-spy record -o e2e.svg -- python -m bench.profile``
(or to measure just that one: ``python -m bench.profile chord --tasks 10000``).

Also prints where Redis spent its time per task (INFO commandstats deltas), since the
server's CPU per task bounds what any engine speed-up can reach.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import daemon, engine
from bench.cli import _run
from bench.server import flush, redis_target
from taskd.log import configure_logging


async def commandstats(url: str) -> dict[str, tuple[int, int]]:
    """Command -> (calls, usec) so far."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        info: dict[str, Any] = await client.info("commandstats")
    finally:
        await client.aclose()
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in info.items()}


async def profile(what: str, tasks: int, workers: int, url: str | None) -> None:
    """Run ``what`` once and print its result and Redis's time per task by command."""
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        async with redis_target(url, Path(tmp)) as target:
            await flush(target.url)
            before = await commandstats(target.url)
            if what == "e2e":
                result: Any = await engine.e2e(target.url, tasks, workers)
            elif what == "drain":
                result = await engine.drain(target.url, tasks, workers)
            elif what == "enqueue":
                result = await engine.enqueue(target.url, tasks, batch=True)
            elif what == "chord":
                result = await engine.chord(target.url, tasks, workers)
            else:
                async with daemon.serve(target.url, workers, Path(tmp)) as served:
                    print(f"taskd serve pid {served.pid}")
                    result = await daemon.e2e_rss(target.url, served, tasks)
            after = await commandstats(target.url)
    print(what, result)
    print(f"{'command':24} {'calls/task':>10} {'usec/task':>10}")
    rows = sorted(after.items(), key=lambda kv: before.get(kv[0], (0, 0))[1] - kv[1][1])
    for name, (calls, usec) in rows[:12]:
        c0, u0 = before.get(name, (0, 0))
        print(f"{name:24} {(calls - c0) / tasks:10.2f} {(usec - u0) / tasks:10.1f}")


def main() -> None:
    """Parse and run."""
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument(
        "what", nargs="?", default="e2e", choices=["e2e", "drain", "enqueue", "chord", "serve"]
    )
    p.add_argument("--tasks", type=int, default=40_000)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--redis-url")
    args = p.parse_args()
    configure_logging("json", "warning")
    _run(profile(args.what, args.tasks, args.workers, args.redis_url))


if __name__ == "__main__":
    main()
