"""Task types for the dashboard's browser tests (`taskd serve --handlers tests.dashboard_handlers`).

Each one makes a state the dashboard must show: visible progress, a failure, a task that
runs until cancelled, and a task that is done at once (for load).
"""

from __future__ import annotations

import asyncio
from typing import Any

import taskd


@taskd.task("steps", example={"steps": 4, "delay_s": 0.5})
async def steps(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Report progress in ``steps`` equal steps, ``delay_s`` apart."""
    count = int(payload.get("steps", 4))
    for i in range(count):
        await asyncio.sleep(float(payload.get("delay_s", 0.5)))
        await ctx.progress(int((i + 1) * 100 / count), f"step {i + 1} of {count}")
    return {"steps": count}


@taskd.task("boom", example={"reason": "disk full"})
async def boom(ctx: taskd.Context, payload: dict[str, Any]) -> None:
    """Fail for good at once, with the payload's reason."""
    raise taskd.Fail(f"boom: {payload.get('reason', 'no reason')}")


@taskd.task("wait", example={"s": 60})
async def wait(ctx: taskd.Context, payload: dict[str, Any]) -> None:
    """Run for ``s`` seconds (until cancelled, in practice)."""
    await asyncio.sleep(float(payload.get("s", 60)))


@taskd.task("quick", example={})
async def quick(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, bool]:
    """Done at once."""
    return {"ok": True}


_failed_once: set[str] = set()  # task ids this process has failed once


@taskd.task("fail_once", example={})
async def fail_once(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, bool]:
    """Fail for good the first time a task runs in this process, succeed when retried."""
    if ctx.task_id not in _failed_once:
        _failed_once.add(ctx.task_id)
        raise taskd.Fail("fails once; retry it")
    return {"ok": True}
