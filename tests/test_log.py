"""Logging: JSON lines, level filtering, task context through contextvars, secret masking."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from taskd.engine.context import Context
from taskd.errors import ConfigError
from taskd.log import MASK, bind_task, configure_logging, mask_secrets
from taskd.model import Status, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.pooltools import registry_of, running_pool


class TerminalStream(io.StringIO):
    """A text stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """JSON logging into a string buffer; structlog is reset afterwards."""
    out = io.StringIO()
    configure_logging("json", "info", out)
    yield out
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_per_event(stream: io.StringIO) -> None:
    """Each event is one orjson-parseable line with event, level and a UTC timestamp."""
    log = structlog.get_logger()
    log.info("task_started", queue="default")
    log.warning("task_retried", delay_s=1.5)
    first, second = lines(stream)
    assert first["event"] == "task_started"
    assert first["level"] == "info"
    assert first["queue"] == "default"
    assert first["timestamp"].endswith("Z")
    assert second["level"] == "warning"
    assert second["delay_s"] == 1.5


def test_level_filters_lower_events(stream: io.StringIO) -> None:
    """At level info, debug events are dropped."""
    log = structlog.get_logger()
    log.debug("noise")
    log.info("kept")
    assert [line["event"] for line in lines(stream)] == ["kept"]


def test_exception_is_structured(stream: io.StringIO) -> None:
    """log.exception renders the traceback as JSON data, not a multi-line string."""
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger().exception("task_failed")
    (line,) = lines(stream)
    assert line["exception"][0]["exc_type"] == "ValueError"
    assert line["exception"][0]["exc_value"] == "boom"


def test_bound_task_context(stream: io.StringIO) -> None:
    """Inside bind_task every line carries task_id, task_type and attempt; after, none do."""
    log = structlog.get_logger()
    with bind_task("t-1", "email", 2, queue="mail"):
        log.info("task_started")
    log.info("idle")
    inside, outside = lines(stream)
    assert inside | {"task_id": "t-1", "task_type": "email", "attempt": 2} == inside
    assert inside["queue"] == "mail"
    assert "task_id" not in outside


async def test_task_context_is_per_asyncio_task(stream: io.StringIO) -> None:
    """Concurrent asyncio tasks each log their own bound task id."""
    log = structlog.get_logger()
    both_bound = asyncio.Barrier(2)

    async def run(task_id: str) -> None:
        with bind_task(task_id, "noop", 1):
            await both_bound.wait()
            log.info("task_started", expected=task_id)

    await asyncio.gather(run("a"), run("b"))
    assert all(line["task_id"] == line["expected"] for line in lines(stream))


def test_redis_url_password_and_token_are_masked(stream: io.StringIO) -> None:
    """A password inside a redis URL and a token value never reach the output."""
    structlog.get_logger().info(
        "redis_connected",
        url="redis://user:hunter2@cache:6379/0",
        token="tok-123",  # noqa: S106 - a fake secret whose masking is under test
        detail="retrying rediss://:hunter2@a:1,b:2/0",
        settings={"auth": {"tokens": ["tok-456"]}, "email": {"smtp_password": "pw-789"}},
    )
    raw = stream.getvalue()
    for secret in ("hunter2", "tok-123", "tok-456", "pw-789"):
        assert secret not in raw
    (line,) = lines(stream)
    assert line["url"] == "redis://user:***@cache:6379/0"
    assert line["token"] == MASK
    assert line["detail"] == "retrying rediss://:***@a:1,b:2/0"
    assert line["settings"]["auth"]["tokens"] == ["***"]


def test_bound_secrets_are_masked(stream: io.StringIO) -> None:
    """Secrets bound through contextvars are masked like direct ones."""
    with structlog.contextvars.bound_contextvars(authorization="Bearer abc"):
        structlog.get_logger().info("request_received")
    assert "abc" not in stream.getvalue()


def test_unset_secret_stays_visible() -> None:
    """An empty or None secret is shown as is, so 'not configured' stays visible."""
    event = mask_secrets(None, "info", {"event": "x", "password": "", "token": None})
    assert event == {"event": "x", "password": "", "token": None}


def test_binary_stream_gets_json_bytes() -> None:
    """A stream with a binary buffer receives the orjson bytes directly, one line each."""
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="utf-8")
    try:
        configure_logging("json", "debug", text)
        structlog.get_logger().debug("task_started", n=1)
        structlog.get_logger().info("task_finished", n=2)
    finally:
        structlog.reset_defaults()
    first, second = (orjson.loads(line) for line in raw.getvalue().splitlines())
    assert (first["event"], second["n"]) == ("task_started", 2)


def test_auto_format_uses_console_on_a_terminal() -> None:
    """auto renders human-readable console lines when the stream is a TTY."""
    out = TerminalStream()
    try:
        configure_logging("auto", "info", out)
        log = structlog.get_logger()
        log.info("task_started", password="pw-1")  # noqa: S106 - a fake secret to mask
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert "task_started" in text
    assert "pw-1" not in text
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)


def test_auto_format_uses_json_off_a_terminal(stream: io.StringIO) -> None:
    """auto renders JSON lines when the stream is not a TTY."""
    configure_logging("auto", "info", stream)
    structlog.get_logger().info("task_started")
    assert lines(stream)[0]["event"] == "task_started"


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "verbose")])
def test_bad_format_or_level(fmt: str, level: str) -> None:
    """An unknown format or level raises ConfigError naming the log setting."""
    with pytest.raises(ConfigError, match=r"^config: log\.(format|level): expected one of"):
        configure_logging(fmt, level, io.StringIO())


async def test_handler_lines_carry_the_task_they_run_for(
    stream: io.StringIO, store: Store, queue: str
) -> None:
    """Lines a handler logs (through ctx.log or any structlog logger) carry its task's id,
    type and attempt, and so does the pool's task_finished; nothing leaks out of the task."""

    async def work(ctx: Context, payload: dict[str, Any]) -> None:
        ctx.log.info("inside_handler")
        structlog.get_logger().info("plain_logger_inside")

    async with running_pool(store, registry_of(work=work), queue):
        ((task, _),) = await store.submit([make_spec("work", queue=queue)])

        async def finished() -> bool:
            return (await store.get(task.id)).status == Status.COMPLETED

        await eventually(finished)
        await eventually(lambda: asyncio.sleep(0, result="task_finished" in stream.getvalue()))
    structlog.get_logger().info("outside")
    found = {line["event"]: line for line in lines(stream)}
    for event in ("inside_handler", "plain_logger_inside", "task_finished"):
        assert (found[event]["task_id"], found[event]["task_type"]) == (task.id, "work")
        assert found[event]["attempt"] == 1
    assert "task_id" not in found["outside"]
