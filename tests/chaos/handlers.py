"""Handlers for the chaos suite (``--handlers tests.chaos.handlers``).

Every handler appends a ``start`` line before it does anything and an ``end`` line when it
returns, to ``$TASKD_CHAOS_DIR/exec-<pid>.jsonl``. A line is one ``os.write`` to an
``O_APPEND`` file, so it lands in the page cache at once: it survives SIGKILL of the
process and an outage of Redis, which is why executions are not recorded in Redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import orjson

import taskd

_files: dict[int, int] = {}  # pid -> fd; one file per process


def record(event: str, ctx: taskd.Context, **extra: Any) -> None:
    """Append one execution event (start/end) of the current attempt."""
    pid = os.getpid()
    fd = _files.get(pid)
    if fd is None:
        folder = os.environ["TASKD_CHAOS_DIR"]
        path = os.path.join(folder, f"exec-{pid}.jsonl")
        fd = _files[pid] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    line = {"ev": event, "id": ctx.task_id, "attempt": ctx.attempt, "pid": pid, "t": time.time()}
    os.write(fd, orjson.dumps(line | extra) + b"\n")


def _done(ctx: taskd.Context) -> dict[str, Any]:
    record("end", ctx)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@taskd.task("work")
async def work(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``payload["ms"]`` milliseconds, then return which process and attempt ran it."""
    record("start", ctx)
    await asyncio.sleep(float(payload.get("ms", 0)) / 1000)
    return _done(ctx)


class PoisonError(BaseException):
    """Not an Exception: escapes ``except Exception`` in careless worker code."""


_RAISES: dict[str, type[BaseException]] = {
    "poison": PoisonError,
    "system_exit": SystemExit,
    "keyboard_interrupt": KeyboardInterrupt,
    "generator_exit": GeneratorExit,
}


@taskd.task("raise_base")
async def raise_base(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Raise the BaseException-derived error named by ``payload["kind"]``."""
    record("start", ctx)
    raise _RAISES[str(payload["kind"])](f"chaos {payload['kind']}")


@taskd.task("swallow_cancel")
async def swallow_cancel(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Ignore cancellation: keep sleeping until ``payload["s"]`` seconds have passed."""
    record("start", ctx)
    until = time.monotonic() + float(payload.get("s", 5))
    while (left := until - time.monotonic()) > 0:
        try:
            await asyncio.sleep(left)
        except asyncio.CancelledError:
            record("cancel_swallowed", ctx)
    return _done(ctx)


@taskd.task("block_loop")
async def block_loop(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Block the event loop with a synchronous sleep of ``payload["s"]`` seconds."""
    record("start", ctx)
    time.sleep(float(payload.get("s", 2)))  # noqa: ASYNC251 - blocking the loop is the point
    return _done(ctx)


@taskd.task("hang")
async def hang(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Never return (until cancelled)."""
    record("start", ctx)
    await asyncio.Event().wait()
    return _done(ctx)


@taskd.task("crash")
async def crash(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL the whole process running it: a poison pill that takes its worker down."""
    record("start", ctx)
    os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.Event().wait()  # never reached
    return _done(ctx)
