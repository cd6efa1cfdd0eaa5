"""Webhook delivery as a taskd user module: signed POSTs, retried, SSRF-guarded.

Each ``webhook.deliver`` task POSTs one event to a subscriber's URL, signed the way the
Standard Webhooks spec describes (``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256>`` headers), so subscribers can verify it
and drop duplicates: the id is the task id, the same on every retry.

- 2xx: delivered. 429 and 5xx: retried with back-off (429 honours Retry-After).
  Network errors: retried. Other 4xx (410 Gone, 401…): the subscriber refused; no retry.
- The signing secret comes from ``WEBHOOK_SECRET`` in the environment, never from the
  payload (payloads are stored in Redis and shown by the API).
- Subscriber URLs are user input: the request goes through taskd's SSRF guard, which
  refuses loopback, private and metadata addresses unless ``[api_call]`` allows them.

Run it::

    PYTHONPATH=examples WEBHOOK_SECRET=whsec-change-me taskd serve --handlers webhooks

and submit ``{"task_type": "webhook.deliver", "payload": {"url": "https://…",
"event": "order.paid", "data": {"order": 42}}}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

import aiohttp

import taskd
from taskd.handlers.ssrf import AddressRefused, Policy, guarded_session

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url", "event", "data"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
        "event": {"type": "string", "pattern": "^[a-z0-9_.-]+$", "maxLength": 100},
        "data": {"type": "object"},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
    },
}
EXAMPLE = {
    "url": "https://hooks.example.com/taskd",
    "event": "order.paid",
    "data": {"order": 42, "total": "19.90"},
}


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Any, body: bytes, tolerance_s: float = 300) -> bool:
    """What a subscriber runs: is this delivery authentic and fresh?"""
    webhook_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, webhook_id, timestamp, body)
    return any(
        hmac.compare_digest(expected, given) for given in headers["webhook-signature"].split()
    )


@taskd.task("webhook.deliver", schema=SCHEMA, example=EXAMPLE)
async def deliver(ctx: taskd.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Deliver one signed webhook event; 4xx from the subscriber stops, 5xx/429 retry."""
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        raise taskd.Fail("WEBHOOK_SECRET is not set")
    body = json.dumps(
        {"type": payload["event"], "data": payload["data"]}, separators=(",", ":")
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "webhook-id": ctx.task_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign(secret, ctx.task_id, timestamp, body),
    }
    timeout = aiohttp.ClientTimeout(total=payload.get("timeout_s", 10))
    try:
        async with (
            guarded_session(Policy.from_settings(ctx.settings), timeout=timeout) as http,
            http.post(
                payload["url"], data=body, headers=headers, allow_redirects=False
            ) as response,
        ):
            status, excerpt = (
                response.status,
                (await response.content.read(300)).decode(errors="replace"),
            )
            retry_after = response.headers.get("Retry-After", "")
    except AddressRefused as exc:
        raise taskd.Fail(str(exc)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise taskd.Retry(f"subscriber unreachable: {type(exc).__name__}: {exc}") from None
    if 200 <= status < 300:
        await ctx.progress(100, f"delivered ({status})")
        return {"status": status, "webhook_id": ctx.task_id, "attempt": ctx.attempt}
    if status == 429 or status >= 500:
        delay = float(retry_after) if retry_after.isdigit() else None
        raise taskd.Retry(f"subscriber answered {status}", delay_s=delay)
    raise taskd.Fail(f"subscriber refused the event with {status}: {excerpt}")
