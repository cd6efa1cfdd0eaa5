"""Tests of the webhook example, as a user would write them for their own handlers.

Run with ``pytest examples/``. The handler is called directly with a Context (no Redis
needed), against a subscriber served by aiohttp on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import webhooks
from aiohttp import web

import taskd
from taskd.config import ApiCallSettings, Settings
from taskd.model import Status, Task, new_task_id

SECRET = "whsec-test"  # noqa: S105 - a test-only signing secret


class Subscriber:
    """Receives deliveries; answers with the next status in ``answers`` (then 204)."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.received: list[tuple[dict[str, Any], bool]] = []
        self.url = ""

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        authentic = webhooks.verify(SECRET, request.headers, body)
        self.received.append((await request.json(), authentic))
        return web.Response(status=self.answers.pop(0) if self.answers else 204)


@pytest.fixture
async def subscriber() -> AsyncIterator[Subscriber]:
    """A subscriber endpoint on a free loopback port."""
    sub = Subscriber()
    app = web.Application()
    app.router.add_post("/hook", sub.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    sub.url = f"http://{host}:{port}/hook"
    try:
        yield sub
    finally:
        await runner.cleanup()


async def run(payload: dict[str, Any], tmp_path: Path, allow_loopback: bool = True) -> Any:
    """One attempt of the handler, with loopback allowed (the subscriber runs locally)."""
    hosts = ("127.0.0.1",) if allow_loopback else ()
    settings = Settings(data_dir=tmp_path, api_call=ApiCallSettings(allow_hosts=hosts))
    task = Task(
        id=new_task_id(),
        name="hook",
        task_type="webhook.deliver",
        queue="default",
        priority=5,
        payload=payload,
        status=Status.PROCESSING,
        attempt=1,
    )

    async def progress(task: Task, percent: int, message: str) -> int:
        return 1

    ctx = taskd.Context(
        task, progress, interval_s=0, loop=asyncio.get_running_loop(), settings=settings
    )
    return await webhooks.deliver(ctx, payload)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing secret, from the environment as in production."""
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)


async def test_delivery_is_signed(subscriber: Subscriber, tmp_path: Path) -> None:
    """The subscriber receives the event and its signature verifies."""
    result = await run({"url": subscriber.url, "event": "order.paid", "data": {"id": 7}}, tmp_path)
    assert result["status"] == 204
    assert subscriber.received == [({"type": "order.paid", "data": {"id": 7}}, True)]


async def test_server_errors_are_retried(subscriber: Subscriber, tmp_path: Path) -> None:
    """A 503 asks taskd for another attempt."""
    subscriber.answers = [503]
    with pytest.raises(taskd.Retry, match="503"):
        await run({"url": subscriber.url, "event": "order.paid", "data": {}}, tmp_path)


async def test_gone_subscriber_is_not_retried(subscriber: Subscriber, tmp_path: Path) -> None:
    """A 410 means the subscription is gone: fail without retrying."""
    subscriber.answers = [410]
    with pytest.raises(taskd.Fail, match="410"):
        await run({"url": subscriber.url, "event": "order.paid", "data": {}}, tmp_path)


async def test_internal_addresses_are_refused(subscriber: Subscriber, tmp_path: Path) -> None:
    """Without allow_hosts, a loopback subscriber URL is refused before connecting."""
    with pytest.raises(taskd.Fail, match="loopback"):
        await run({"url": subscriber.url, "event": "x", "data": {}}, tmp_path, allow_loopback=False)
    assert subscriber.received == []
