"""The seed's five task types.

Until their real implementations land (issue: built-in task types), each performs a short
job in steps and reports progress, so the queue can be exercised end to end.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskd.context import Context
from taskd.registry import task


async def _stepped(ctx: Context, steps: int, step_s: float, label: str) -> None:
    for i in range(1, steps + 1):
        await asyncio.sleep(step_s)
        await ctx.progress(i * 100 // steps, f"{label} {i}/{steps}")


@task("email", example={"recipient": "user@example.com", "subject": "Welcome!", "body": "Hi"})
async def email(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Send an email to ``recipient``."""
    await _stepped(ctx, 2, 0.05, "sending")
    return {"sent_to": payload.get("recipient")}


@task("data_processing", example={"records": 1000})
async def data_processing(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Aggregate over records."""
    records = payload.get("records", 100)
    count = records if isinstance(records, int) else len(records)
    await _stepped(ctx, 4, 0.05, "processing")
    return {"processed": count}


@task("file_conversion", example={"source": "in.csv", "target": "out.json"})
async def file_conversion(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Convert a file between formats."""
    await _stepped(ctx, 3, 0.05, "converting")
    return {"target": payload.get("target")}


@task("api_call", example={"url": "https://example.com/", "method": "GET"})
async def api_call(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Make an HTTP request."""
    await _stepped(ctx, 2, 0.05, "calling")
    return {"url": payload.get("url")}


@task("report_generation", example={"period_s": 3600})
async def report_generation(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Generate a report."""
    await _stepped(ctx, 4, 0.05, "rendering")
    return {"report": "ok"}
