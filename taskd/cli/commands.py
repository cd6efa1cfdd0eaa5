"""The ``taskd`` command: parse, load config, hand off. No logic lives here."""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

import taskd
from taskd import config
from taskd.cli import display
from taskd.errors import TaskdError
from taskd.log import configure_logging
from taskd.model import QUEUE_NAME

if TYPE_CHECKING:
    from taskd.cli.remote import Remote


F = TypeVar("F", bound=Callable[..., Any])


def _run(coro: Any) -> None:
    """Run on uvloop when it is installed, else asyncio's default loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, imported only when running

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


@click.group()
@click.version_option(taskd.__version__, prog_name="taskd", message="%(prog)s %(version)s")
@click.option(
    "--url",
    default=None,
    callback=lambda ctx, param, value: value and _check_url(ctx, param, value),
    help="The taskd server for the command that follows (as its own --url) [env TASKD_URL].",
)
def main(url: str | None) -> None:
    """taskd: a real-time task queue on Redis Streams."""
    if url:  # a --url after the command still wins: it is read before the environment
        os.environ["TASKD_URL"] = url


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(f"taskd {taskd.__version__}")


# Command-line flags of the node commands -> dotted setting names.
_NODE_FLAGS = {
    "host": "server.host",
    "port": "server.port",
    "health_port": "server.health_port",
    "redis_url": "redis.url",
    "data_dir": "data_dir",
    "workers": "workers.count",
    "handlers": "workers.handlers",
    "queues": "workers.queues",
    "log_format": "log.format",
    "log_level": "log.level",
}


def _node_options(func: F) -> F:
    """The options ``serve`` and ``worker`` share, in --help order."""
    options = (
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="taskd.toml to read (default: $TASKD_CONFIG, else none).",
        ),
        click.option(
            "--redis-url", help="Redis URL; empty = embedded (worker: the local serve's)."
        ),
        click.option(
            "--data-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Where the embedded server and files live.",
        ),
        click.option("--workers", type=int, help="Worker coroutines [4]; serve: 0 = API only."),
        click.option("--handlers", help="Comma-separated modules with @taskd.task handlers."),
        click.option("--queues", help="Comma-separated queues to consume, in order of preference."),
        click.option("--log-format", type=click.Choice(["auto", "console", "json"])),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"])),
    )
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.option("--host", help="Address to listen on [127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [8000].")
@_node_options
def serve(config_path: Path | None, **flags: Any) -> None:
    """Run a taskd node: HTTP API, WebSocket, dashboard, workers and supervisor.

    With --workers 0 the node runs no tasks (an API-only node in front of `taskd worker`
    nodes); without a Redis URL it starts and manages an embedded server.
    """
    _run_node("serve", config_path, flags)


@main.command()
@click.option("--health-port", type=int, help="Serve /healthz, /readyz, /metrics here [none].")
@click.option("--host", help="Address of the health listener [127.0.0.1].")
@_node_options
def worker(config_path: Path | None, **flags: Any) -> None:
    """Run a worker-only node: workers and supervisor, no API, no dashboard.

    Without a Redis URL it joins the embedded server of a `taskd serve` using the same
    data dir. SIGTERM lets running tasks finish within server.shutdown_grace_s.
    """
    _run_node("worker", config_path, flags)


def _run_node(role: str, config_path: Path | None, flags: dict[str, Any]) -> None:
    """Load the settings and run the daemon in ``role``; errors end it with one line."""
    try:
        settings = config.load(
            config_path, os.environ, {_NODE_FLAGS[k]: v for k, v in flags.items()}
        )
    except TaskdError as exc:
        click.echo(f"taskd: {exc}", err=True)
        sys.exit(2)
    _handlers_importable_from_cwd()
    # A daemon configures logging once, so loggers may cache their processor chain.
    configure_logging(settings.log.format, settings.log.level, cache=True)
    from taskd.daemon.root import Daemon, Role  # noqa: PLC0415 - keep `taskd version` light

    try:
        _run(Daemon(settings, role=Role(role)).run())
    except (TaskdError, ExceptionGroup) as exc:
        error = _first_taskd_error(exc)
        if error is None:
            raise
        click.echo(f"taskd: {error}", err=True)
        sys.exit(1)


def _handlers_importable_from_cwd() -> None:
    """Let ``--handlers myapp.jobs`` find ``myapp`` in the directory taskd runs in.

    ``python -m taskd`` puts the current directory on the import path, the ``taskd``
    console script does not; like ``arq`` (and ``celery -A``), serve makes them agree.
    Appended, not prepended: a stray file there must not shadow an installed module.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the benchmark suite of a source checkout (bench/; see `taskd bench --help`)."""
    root = Path(taskd.__file__).resolve().parent.parent
    wants_help = bool({"-h", "--help"} & set(args))
    if not (root / "bench" / "cli.py").is_file():
        if wants_help:
            click.echo(click.get_current_context().get_help())
        click.echo("taskd: bench/ ships only in a source checkout of taskd", err=True)
        sys.exit(0 if wants_help else 2)
    sys.path.insert(0, str(root))
    import importlib  # noqa: PLC0415 - bench is not a dependency of the package

    sys.exit(importlib.import_module("bench.cli").main(list(args), prog="taskd bench"))


def _first_taskd_error(exc: BaseException) -> TaskdError | None:
    """The TaskdError inside an exception (group), so users see one line, not a traceback."""
    if isinstance(exc, TaskdError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_taskd_error(inner)
            if found is not None:
                return found
    return None


# -- client commands: talk to a running server over its HTTP API ----------------------
# Parsing and exit codes live here; the HTTP client is taskd.cli.remote, the text
# taskd.cli.display. Exit codes: 1 the API refused, 2 usage, 3 unreachable, 4 unfinished.

DEFAULT_URL = "http://127.0.0.1:8000"
TASK_ID_PREFIX = re.compile(r"[0-9a-f]{1,32}")
T = TypeVar("T")


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest.strip("/"):
        raise click.BadParameter(f"expected http://host:port, got {value!r}")
    return value


def _task_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # The whole value: it becomes a path segment, and a prefix check let "ab/../.."
    # through to other routes.
    if not TASK_ID_PREFIX.fullmatch(value.lower()):
        raise click.BadParameter(
            f"expected a task id (32 hex digits) or its first digits, got {value!r}"
        )
    return value.lower()


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A finite number of seconds: click's FloatRange lets nan and inf through (nan is
    not below its minimum), and JSON has no such numbers to send."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"expected a number of seconds, got {value!r}")
    return value


def _queue_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not QUEUE_NAME.fullmatch(value):
        raise click.BadParameter(f"expected a queue name (A-Z a-z 0-9 _ . -), got {value!r}")
    return value


def _payload(ctx: click.Context, param: click.Parameter, value: str) -> dict[str, Any]:
    text = value
    if value.startswith("@"):
        try:
            text = sys.stdin.read() if value == "@-" else Path(value[1:]).read_text()
        except (OSError, UnicodeError) as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc}") from None
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise click.BadParameter("must be a JSON object")
    return payload


def client_options(func: F) -> F:
    """``--url`` and ``--json``, shared by every command that talks to a server."""
    func = click.option(
        "--json", "as_json", is_flag=True, help="Print the API's JSON instead of text."
    )(func)
    return click.option(
        "--url",
        envvar="TASKD_URL",
        default=DEFAULT_URL,
        show_default=True,
        callback=_check_url,
        help="The taskd server [env TASKD_URL]; a token is read from TASKD_TOKEN.",
    )(func)


def call(url: str, action: Callable[[Remote], Awaitable[T]], interrupt_code: int = 130) -> T:
    """Run ``action`` against the server; a failure ends the command with one line."""
    from taskd.cli.remote import Remote, RemoteError  # noqa: PLC0415 - aiohttp only when used

    async def go() -> T:
        async with Remote(url, os.environ.get("TASKD_TOKEN") or None) as remote:
            return await action(remote)

    try:
        return asyncio.run(go())
    except RemoteError as exc:
        click.echo(f"taskd: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(interrupt_code)


def show(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    try:
        click.echo(display.json_text(data) if as_json else render(data))
    except (KeyError, TypeError, AttributeError):
        click.echo(f"taskd: unexpected answer from the server: {str(data)[:200]}", err=True)
        sys.exit(1)


@main.command()
@click.argument("task_type")
@click.option("--payload", default="{}", callback=_payload, help="JSON object, @file or @-.")
@click.option("--priority", type=click.IntRange(1, 10), help="1-10, 10 most urgent [5].")
@click.option("--queue", callback=_queue_name, help="Queue [default].")
@click.option(
    "--delay",
    "delay_s",
    type=click.FloatRange(min=0),
    callback=_seconds,
    help="Start in S seconds.",
)
@click.option("--name", help="Display name [the task type].")
@click.option(
    "--unique-key", help="Idempotency key: a task with it still kept (any status) is returned."
)
@click.option("--max-retries", type=click.IntRange(0, 1000), help="Retries after failures [3].")
@click.option("--wait", is_flag=True, help="Wait until it ends; exit 4 unless it completed.")
@client_options
def submit(
    url: str, as_json: bool, task_type: str, payload: dict[str, Any], wait: bool, **fields: Any
) -> None:
    """Submit a task of type TASK_TYPE."""
    body = {"task_type": task_type, "payload": payload}
    body |= {k: v for k, v in fields.items() if v is not None}

    async def action(remote: Remote) -> dict[str, Any]:
        task: dict[str, Any] = await remote.post("/api/tasks", body)
        if not wait:
            return task
        if not as_json:
            click.echo(f"submitted {display.task_line(task)}; waiting", err=True)
        return await remote.wait(task["id"])

    task = call(url, action)
    show(task, as_json, display.task_detail if wait else display.task_line)
    if wait and task.get("status") != "completed":
        problem = display.printable(f"{task.get('status')}: {task.get('error')}")
        click.echo(f"taskd: task {task['id']} {problem}", err=True)
        sys.exit(4)


@main.command()
@click.argument("task_id", callback=_task_id)
@client_options
def get(url: str, as_json: bool, task_id: str) -> None:
    """Show one task (by id or a unique prefix of it) with its payload and result."""

    async def action(remote: Remote) -> Any:
        return await remote.get(f"/api/tasks/{await remote.resolve(task_id)}")

    show(call(url, action), as_json, display.task_detail)


@main.command("list")
@click.option("--status", help="A status, or several separated by commas.")
@click.option("--type", "task_type", help="Only this task type.")
@click.option("--queue", callback=_queue_name, help="Only this queue.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@client_options
def list_tasks(url: str, as_json: bool, **query: Any) -> None:
    """List tasks, newest first."""
    show(call(url, lambda r: r.get("/api/tasks", **query)), as_json, display.task_table)


@main.command()
@client_options
def stats(url: str, as_json: bool) -> None:
    """Counts per status, throughput and ready depth over every queue."""
    show(call(url, lambda r: r.get("/api/tasks/stats/overview")), as_json, display.stats_view)


@main.command()
@click.argument("task_id", callback=_task_id)
@client_options
def cancel(url: str, as_json: bool, task_id: str) -> None:
    """Cancel a waiting task, or ask a running one to stop (by id or a unique prefix)."""

    async def action(remote: Remote) -> tuple[bool, dict[str, Any]]:
        return await remote.cancel(await remote.resolve(task_id))

    done, task = call(url, action)
    verb = "cancelled" if done else "cancelling (running: the worker stops it)"
    show(task, as_json, lambda t: f"{verb} {display.task_line(t)}")


@main.command()
@click.argument("task_id", callback=_task_id)
@client_options
def retry(url: str, as_json: bool, task_id: str) -> None:
    """Send a failed or cancelled task back to pending (by id or a unique prefix)."""

    async def action(remote: Remote) -> Any:
        return await remote.post(f"/api/tasks/{await remote.resolve(task_id)}/retry")

    task = call(url, action)
    show(task, as_json, lambda t: f"retried {display.task_line(t)}")


@main.command()
@click.option("--queue", callback=_queue_name, help="Only events of this queue.")
@click.option("--type", "task_type", help="Only events of this task type.")
@client_options
def watch(url: str, as_json: bool, queue: str | None, task_type: str | None) -> None:
    """Print task events as they happen (Ctrl-C to stop); --json: one message per line."""

    def show(message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "events":
            events = [e for e in message.get("events", []) if display.matches(e, queue, task_type)]
            if as_json and events:
                click.echo(display.json_line(message | {"events": events}))
            for event in [] if as_json else events:
                click.echo(display.event_line(event))
        elif as_json:
            click.echo(display.json_line(message))
        elif kind == "snapshot":
            click.echo(display.snapshot_line(message, url), err=True)

    async def action(remote: Remote) -> None:
        def reconnecting(reason: str) -> None:
            click.echo(f"taskd: reconnecting ({reason})", err=True)

        async for message in remote.messages(reconnecting):
            show(message)

    call(url, lambda remote: _until_signalled(action(remote)), interrupt_code=0)


async def _until_signalled(work: Awaitable[None]) -> None:
    """Run ``work`` until SIGINT or SIGTERM ends it cleanly (the command exits 0).

    The handlers go on the loop instead of relying on Python's KeyboardInterrupt: a
    process that inherited SIGINT ignored (a shell script's ``taskd watch &``) never
    raises one, so ``kill -INT`` and Ctrl-C left it running forever.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # always inside a task: asyncio.run made one
    signalled: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        signalled.append(sig)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    try:
        await work
    except asyncio.CancelledError:
        if not signalled:
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@main.command("queues")
@client_options
def list_queues(url: str, as_json: bool) -> None:
    """Every queue: state, counts, serving daemons and throughput."""
    show(call(url, lambda r: r.get("/api/queues")), as_json, display.queue_table)


@main.command()
@click.argument("queue", callback=_queue_name)
@client_options
def pause(url: str, as_json: bool, queue: str) -> None:
    """Stop every daemon from starting QUEUE's tasks (submitting still works)."""
    show(call(url, lambda r: r.post(f"/api/queues/{queue}/pause")), as_json, display.queue_line)


@main.command()
@click.argument("queue", callback=_queue_name)
@client_options
def resume(url: str, as_json: bool, queue: str) -> None:
    """Let daemons start QUEUE's tasks again."""
    show(call(url, lambda r: r.post(f"/api/queues/{queue}/resume")), as_json, display.queue_line)


@main.command()
@click.argument("queue", callback=_queue_name)
@click.option("--yes", is_flag=True, help="Confirm without asking.")
@client_options
def purge(url: str, as_json: bool, queue: str, yes: bool) -> None:
    """Cancel every waiting task of QUEUE (running ones finish)."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("purge cancels every waiting task of the queue: add --yes")
        click.confirm(f"Cancel every waiting task of queue {queue}?", abort=True)
    result = call(url, lambda r: r.post(f"/api/queues/{queue}/purge", {"confirm": True}))
    show(result, as_json, lambda b: f"purged {b['purged']} waiting tasks of queue {b['queue']}")


@main.command()
@click.argument("queue", callback=_queue_name)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    callback=_seconds,
    help="Give up after S seconds (exit 4).",
)
@client_options
def drain(url: str, as_json: bool, queue: str, timeout: float | None) -> None:
    """Wait until no task of QUEUE is unfinished (waiting included)."""
    warned: list[bool] = []

    def progress(found: dict[str, Any], remaining: int) -> None:
        if not warned and remaining:
            warned.append(True)
            for problem in display.drain_problems(found):
                click.echo(f"taskd: {problem}", err=True)
        if not as_json and remaining:
            click.echo(display.queue_line(found), err=True)

    result = call(url, lambda r: r.drain(queue, timeout, progress))
    show(result, as_json, lambda q: f"queue {q['name']} is drained")
