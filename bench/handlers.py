"""Task types the benchmark's ``taskd serve`` children load (``--handlers bench.handlers``)."""

from __future__ import annotations

import asyncio
from typing import Any

import taskd


@taskd.task("bench.noop")
async def noop(ctx: taskd.Context, payload: dict[str, Any]) -> None:
    """Do nothing: measures the queue, not the work."""


@taskd.task("bench.sleep")
async def sleep(ctx: taskd.Context, payload: dict[str, Any]) -> None:
    """Await ``payload["ms"]`` milliseconds: an I/O-bound task."""
    await asyncio.sleep(float(payload.get("ms", 10)) / 1000)
