"""The ``taskd`` command: parse, load config, hand off. No logic lives here."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

import taskd
from taskd import config
from taskd.errors import TaskdError
from taskd.log import configure_logging


def _run(coro: Any) -> None:
    """Run on uvloop when it is installed, else asyncio's default loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, imported only when running

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


@click.group()
def main() -> None:
    """taskd: a real-time task queue on Redis Streams."""


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(f"taskd {taskd.__version__}")


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="taskd.toml to read (default: $TASKD_CONFIG, else none).",
)
@click.option("--host", help="Address to listen on [127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [8000].")
@click.option("--redis-url", help="Redis URL; empty = start an embedded server.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the embedded server and files live.",
)
@click.option("--workers", type=int, help="Worker coroutines [4].")
@click.option("--handlers", help="Comma-separated modules with @taskd.task handlers.")
@click.option("--queues", help="Comma-separated queues to consume, in order of preference.")
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]))
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(config_path: Path | None, **flags: Any) -> None:
    """Run a taskd node: HTTP API, WebSocket, dashboard, workers and supervisor."""
    names = {
        "host": "server.host",
        "port": "server.port",
        "redis_url": "redis.url",
        "data_dir": "data_dir",
        "workers": "workers.count",
        "handlers": "workers.handlers",
        "queues": "workers.queues",
        "log_format": "log.format",
        "log_level": "log.level",
    }
    try:
        settings = config.load(config_path, os.environ, {names[k]: v for k, v in flags.items()})
    except TaskdError as exc:
        click.echo(f"taskd: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log.format, settings.log.level)
    from taskd.daemon import Daemon  # noqa: PLC0415 - keep `taskd version` import-light

    try:
        _run(Daemon(settings).run())
    except (TaskdError, ExceptionGroup) as exc:
        error = _first_taskd_error(exc)
        if error is None:
            raise
        click.echo(f"taskd: {error}", err=True)
        sys.exit(1)


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the benchmark suite of a source checkout (bench/; see `taskd bench --help`)."""
    root = Path(taskd.__file__).resolve().parent.parent
    if not (root / "bench" / "cli.py").is_file():
        click.echo("taskd: bench/ ships only in a source checkout of taskd", err=True)
        sys.exit(2)
    sys.path.insert(0, str(root))
    import importlib  # noqa: PLC0415 - bench is not a dependency of the package

    sys.exit(importlib.import_module("bench.cli").main(list(args)))


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
