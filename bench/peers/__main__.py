"""``python -m bench.peers NAME --redis-url URL --plan JSON``: one peer's results as JSON."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Coroutine
from typing import Any, TypeVar

from bench.peers import MODULES
from bench.peers.harness import Harness, PeerPlan, log_dir

T = TypeVar("T")


def main() -> int:
    """Run one peer and print one JSON object (``{"error": ...}`` if it could not run)."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("name", choices=sorted(MODULES))
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--plan", required=True, help="PeerPlan fields as JSON")
    args = parser.parse_args()
    os.environ["BENCH_REDIS_URL"] = args.redis_url  # the peer's app reads it at import
    result: dict[str, Any]
    try:
        module = importlib.import_module(MODULES[args.name])
    except ImportError as exc:
        result = {"skipped": f"not installed in {sys.executable}: {exc}"}
    else:
        logs = log_dir()
        harness = Harness(module.PEER, args.redis_url, PeerPlan(**json.loads(args.plan)), logs)
        try:
            result = _run(harness.run())
        except Exception as exc:  # one broken peer must not sink the whole benchmark
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}", "logs": str(logs)}
        else:
            shutil.rmtree(logs, ignore_errors=True)  # worker logs are kept for failures only
    print(json.dumps(result))
    return 0


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """On uvloop when installed (the submitting side is the same for every peer); SIGTERM
    cancels the run, so the worker subprocess is still stopped."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return asyncio.run(guarded())
    return uvloop.run(guarded())


if __name__ == "__main__":
    sys.exit(main())
