"""Handlers loaded by `taskd serve --handlers tests.daemon_handlers` in subprocess tests."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import taskd


@taskd.task("sleepy")
async def sleepy(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep for ``payload["s"]`` seconds and say which process ran it."""
    await asyncio.sleep(float(payload.get("s", 0.1)))
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@taskd.task("chancy")
async def chancy(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep for ``payload["s"]`` seconds, then fail if ``payload["fail"]`` is true."""
    await asyncio.sleep(float(payload.get("s", 0)))
    if payload.get("fail"):
        raise RuntimeError("failed on purpose")
    return {"pid": os.getpid()}
