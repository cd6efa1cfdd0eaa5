"""``python -m bench`` / ``taskd bench``: parse options, run the suite, print or write results."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench import report, suite
from bench.plan import FULL_TASKS, QUICK_TASKS, Plan
from bench.procs import python_of
from bench.server import redis_target
from bench.targets import TARGETS_16, targets
from taskd.log import configure_logging

T = TypeVar("T")
HEADLINE = (
    "e2e_per_s",
    "enqueue_per_s",
    "enqueue_batch_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "io_efficiency",
    "rss_mb",
    "redis_bytes_per_task",
)


def parse(argv: list[str] | None, prog: str = "python -m bench") -> argparse.Namespace:
    """The command line (``prog`` names the command in usage: ``taskd bench`` runs it too)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="taskd's benchmark suite (issue 6): taskd's workloads, then its peers', "
        "against one Redis. The Redis database is flushed between workloads.",
    )
    p.add_argument(
        "--tasks",
        type=int,
        help=f"e2e tasks; other workloads scale with it [{FULL_TASKS}; {QUICK_TASKS} with --quick]",
    )
    p.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    p.add_argument("--workers", type=int, default=8, help="worker concurrency W [8]")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of the comparison (taskd's e2e, enqueue, latency, io and every peer's), "
        "interleaved so that load bursts hit all alike; medians reported [1]",
    )
    p.add_argument(
        "--only",
        help="comma-separated: taskd (its own workloads), responsive (only taskd's "
        "loop-lag workload: eight big data_processing tasks) and/or peers "
        "(taskd-serve, arq, saq, taskiq, dramatiq, huey, celery, rq) [all]",
    )
    p.add_argument(
        "--redis-url",
        help="a loopback Redis to use (it is flushed!) instead of starting the embedded server",
    )
    p.add_argument(
        "--peer-python",
        help="interpreter with the peers installed "
        "[.bench-venv/bin/python in the repository if it exists, else this one]",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--markdown", type=Path, help="write the results table to this file")
    p.add_argument("--log-level", default="warning", help="taskd's log level [warning]")
    args = p.parse_args(argv)
    args.tasks = args.tasks or (QUICK_TASKS if args.quick else FULL_TASKS)
    if args.tasks < 10 or args.workers < 1 or args.repeat < 1:
        p.error("--tasks must be >= 10, --workers and --repeat >= 1")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; the JSON object."""
    plan = Plan.sized(args.tasks, args.workers, args.repeat)
    only = set(args.only.split(",")) if args.only else None
    steps = suite.Steps()
    result: dict[str, Any] = dict.fromkeys(HEADLINE) | {"peers": {}}
    result["machine"] = report.machine()
    result["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="taskd-bench-") as tmp:
        async with redis_target(args.redis_url, Path(tmp)) as target:
            steps.say(f"redis: {target.version} at {target.url}; plan: {plan}")
            rounds = []
            for number in range(1, plan.repeat + 1):
                steps.say(f"round {number} of {plan.repeat}")
                one: dict[str, Any] = {"peers": {}}
                if only is None or "taskd" in only:
                    one |= await suite.core(target.url, plan, steps)
                for name in suite.peer_names(only):
                    python = (
                        sys.executable if name in report.NOT_PEERS else python_of(args.peer_python)
                    )
                    one["peers"][name] = await suite.peer(name, python, target.url, plan, steps)
                rounds.append(one)
            result |= suite.merge(rounds)
            if only is None or "taskd" in only:
                result |= await suite.extras(target.url, plan, Path(tmp), steps)
            if only is None or "taskd" in only or "responsive" in only:
                result |= await suite.loop_responsiveness(target.url, plan, Path(tmp), steps)
            result["versions"] = report.versions(target.version)
    result["ratios"] = report.ratios(result)
    result["errors"] = steps.errors
    result["skipped"] = steps.skipped
    result["step_seconds"] = steps.seconds
    result["plan"] = plan.as_dict()
    result["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["elapsed_s"] = round(time.monotonic() - steps.started, 1)
    return result


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> int:
    """Entry point; 0 when every workload ran, 1 when some failed (results still printed)."""
    args = parse(argv, prog)
    configure_logging("json", args.log_level)
    result = _run(run(args))
    if args.markdown:
        args.markdown.write_text(report.markdown(result, report.command_line()))
    if args.json:
        print(json.dumps(result))
    else:
        rows = [*targets(result, TARGETS_16), *targets(result)]
        for name, measured, goal, ok in rows:
            print(f"{name:66} {measured:>12}  goal {goal:10} {'' if ok is None else ok}")
    return 1 if result["errors"] else 0


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed, as ``taskd serve`` runs."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
