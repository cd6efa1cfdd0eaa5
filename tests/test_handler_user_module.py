"""User handler modules: loaded by name from config, validated by their schema, run in a pool.

The module under test is the shipped example, ``examples/webhooks.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from taskd.config import load
from taskd.engine.registry import Registry
from taskd.errors import HandlerImportError, ValidationError
from taskd.model import Status, make_spec
from taskd.store import Store
from tests.handlertools import finished, running_pool, settings_at
from tests.procs import DaemonProcess

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SECRET = "whsec-user-module"  # noqa: S105 - a test-only signing secret


@pytest.fixture
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``webhooks`` importable, as PYTHONPATH=examples would."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)


class Subscriber:
    """Records deliveries (body, webhook-id, signature valid); answers from ``answers``."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.received: list[tuple[Any, str, bool]] = []

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        valid = importlib.import_module("webhooks").verify(SECRET, request.headers, body)
        self.received.append((await request.json(), request.headers["webhook-id"], valid))
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


@pytest.fixture
async def subscriber() -> AsyncIterator[tuple[Subscriber, str]]:
    """A webhook subscriber on a free loopback port, and its URL."""
    sub = Subscriber()
    app = web.Application()
    app.router.add_post("/hook", sub.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield sub, f"http://{host}:{port}/hook"
    finally:
        await runner.cleanup()


@pytest.mark.usefixtures("examples_on_path")
def test_module_named_in_config_is_loaded(tmp_path: Path) -> None:
    """TASKD_HANDLERS=webhooks registers webhook.deliver with its docstring and schema."""
    settings = load(None, {"HOME": str(tmp_path), "TASKD_HANDLERS": "webhooks"}, {})
    registry = Registry.from_modules(settings.workers.handlers, settings=settings)
    found = registry.get("webhook.deliver")
    assert found is not None
    assert found.description.startswith("Deliver one signed webhook event")
    assert found.schema is not None
    assert "email" in registry  # built-ins stay
    registry.check_payload("webhook.deliver", found.example)


@pytest.mark.usefixtures("examples_on_path")
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"url": "https://x.example/h", "data": {}}, "payload.event"),
        ({"url": "ftp://x.example/h", "event": "a", "data": {}}, "payload.url"),
        ({"url": "https://x.example/h", "event": "A B", "data": {}}, "payload.event"),
        ({"url": "https://x.example/h", "event": "a", "data": []}, "payload.data"),
        ({"url": "https://x.example/h", "event": "a", "data": {}, "secret": "s"}, "payload.secret"),
    ],
)
def test_user_schema_is_checked_at_submit(payload: dict[str, Any], field: str) -> None:
    """The module's schema refuses bad payloads, naming the field."""
    registry = Registry.from_modules(["webhooks"])
    with pytest.raises(ValidationError) as info:
        registry.check_payload("webhook.deliver", payload)
    assert info.value.field == field


def test_module_that_fails_to_import_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken handler module stops startup with its name and the cause."""
    (tmp_path / "broken_jobs.py").write_text("import taskd\nraise RuntimeError('no config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(HandlerImportError, match=r"'broken_jobs'.*RuntimeError: no config"):
        Registry.from_modules(["broken_jobs"])
    with pytest.raises(HandlerImportError, match="'no_such_module_xyz'"):
        Registry.from_modules(["no_such_module_xyz"])


@pytest.mark.usefixtures("examples_on_path")
async def test_webhook_delivered_through_the_pool_with_a_retry(
    store: Store, queue: str, tmp_path: Path, subscriber: tuple[Subscriber, str]
) -> None:
    """In a real pool a 500 is retried and the redelivery carries the same webhook-id."""
    sub, url = subscriber
    sub.answers = [500]
    settings = settings_at(
        tmp_path, api_call={"allow_hosts": ("127.0.0.1",)}, workers={"handlers": ("webhooks",)}
    )
    registry = Registry.from_modules(settings.workers.handlers, settings=settings)
    payload = {"url": url, "event": "order.paid", "data": {"order": 42}}
    registry.check_payload("webhook.deliver", payload)
    async with running_pool(store, queue, settings, registry):
        ((task, _),) = await store.submit(
            [make_spec("webhook.deliver", payload, queue=queue, max_retries=3)]
        )
        done = await finished(store, task.id)
    assert done.status == Status.COMPLETED, done.error
    assert done.retry_count == 1
    assert done.result == {"status": 200, "webhook_id": task.id, "attempt": 2}
    event = {"type": "order.paid", "data": {"order": 42}}
    assert sub.received == [(event, task.id, True), (event, task.id, True)]


JOBS = '''
import taskd


@taskd.task("myapp.hello")
async def hello(ctx: taskd.Context, payload: dict) -> dict:
    """Greet someone."""
    return {"hello": payload.get("name", "world")}
'''


def _myapp(root: Path) -> None:
    """A package ``myapp`` with a ``jobs`` module, as a user writes one in their project."""
    (root / "myapp").mkdir(parents=True)
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "jobs.py").write_text(JOBS)


@pytest.mark.slow
async def test_console_script_imports_handlers_from_the_current_directory(
    tmp_path: Path, redis_url: str
) -> None:
    """`taskd serve --handlers myapp.jobs`, the installed script run in the project
    directory with no PYTHONPATH, loads ``myapp`` from there (as `celery -A` does)."""
    _myapp(tmp_path)
    daemon = DaemonProcess(
        tmp_path, "--redis-url", redis_url, "--handlers", "myapp.jobs", console_script=True
    )
    try:
        await daemon.ready()
        async with ClientSession() as http, http.get(f"{daemon.url}/api/task-types") as reply:
            names = [t["name"] for t in (await reply.json())["task_types"]]
        assert "myapp.hello" in names
    finally:
        daemon.close()


@pytest.mark.slow
async def test_console_script_says_where_it_looked_for_a_missing_module(
    tmp_path: Path, redis_url: str
) -> None:
    """A handler module found nowhere is one line naming the directory searched and the fix."""
    daemon = DaemonProcess(
        tmp_path, "--redis-url", redis_url, "--handlers", "myapp.jobs", console_script=True
    )
    try:
        assert await daemon.wait() == 1
        output = daemon.output()
        assert "cannot import handler module 'myapp.jobs'" in output
        assert str(tmp_path) in output
        assert "PYTHONPATH" in output
        assert "Traceback" not in output
    finally:
        daemon.close()
