"""Logging setup: the only ``structlog.configure`` in taskd, and the secret masker.

structlog's production recipe: context variables merged into every line, ISO UTC
timestamps, orjson-rendered JSON lines off a TTY and a readable console on one. Secrets are
masked in one processor right before rendering, so no call site has to remember to.
:func:`mask_url` lives here rather than in :mod:`taskd.config` because logging must not
depend on configuration, while configuration may use the masker.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Final, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from taskd.errors import ConfigError

__all__ = [
    "FORMATS",
    "LEVELS",
    "bind_task",
    "bind_task_fields",
    "configure_logging",
    "enabled",
    "mask_secrets",
    "mask_url",
]

MASK: Final = "***"
FORMATS: Final = ("auto", "console", "json")
LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# The configured level (structlog's default, everything, until configure_logging runs).
_threshold: list[int] = [logging.DEBUG]
_TASK_FIELDS: ContextVar[tuple[str, str, int] | None] = ContextVar("taskd_task", default=None)

# Userinfo with a password inside any scheme://… URL, also inside free text. The password
# may contain '@' (the last '@' before the host wins, as in urllib) but, per RFC 3986, no
# unescaped '/', '?' or '#', so ordinary URLs with '@' in their path are left alone.
_URL_PASSWORD: Final = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/?#@,]*:)(?P<password>[^\s/?#]*)(?P<tail>@)",
    re.IGNORECASE,
)
# The same without a (well-formed) scheme: "redis//:pw@host", "redis:/u:pw@host",
# "u:pw@host". A mistyped URL is still a URL to whoever reads the message.
_BARE_PASSWORD: Final = re.compile(
    r"(?P<head>(?<![^\s'\"(=,/])[^\s:/?#@,'\"]*:)(?P<password>[^\s/?#'\"]*)(?P<tail>@)"
)
# redis-py also accepts the password as a query parameter (mostly for unix:// sockets).
_QUERY_PASSWORD: Final = re.compile(
    r"(?P<head>[?&]password=)(?P<password>[^&#\s]*)(?P<tail>)", re.IGNORECASE
)
# Keys whose whole value is a secret: password, smtp_password, token, read_tokens, …
_SECRET_KEY: Final = re.compile(
    r"(?:^|_)(?:password|passwd|token|tokens|secret|authorization|api_key)$", re.I
)
_MAX_DEPTH: Final = 8
# Structured tracebacks without frame locals: locals are noisy and may hold secrets.
_TRACEBACKS: Final = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def _mask_match(match: re.Match[str]) -> str:
    if not match["password"]:
        return match[0]  # an empty password reveals nothing; keep the URL as written
    return f"{match['head']}{MASK}{match['tail']}"


def mask_url(url: str) -> str:
    """Replace every password in ``url`` with ``***``, keeping user, hosts, port and db.

    Works for redis://, rediss://, unix:// (userinfo or ``?password=``), sentinel URLs with
    comma-separated host lists, comma-separated lists of URLs, and URLs inside free text.
    """
    if "@" in url:
        if "://" in url:
            url = _URL_PASSWORD.sub(_mask_match, url)
        url = _BARE_PASSWORD.sub(_mask_match, url)
    if "password=" in url.lower():
        url = _QUERY_PASSWORD.sub(_mask_match, url)
    return url


def _mask_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return mask_url(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {key: _mask_item(key, item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(item, depth + 1) for item in value]
    return value


def _mask_item(key: object, value: Any, depth: int) -> Any:
    if isinstance(key, str) and _SECRET_KEY.search(key):
        if value is None or value == "":
            return value  # an unset secret is worth seeing, and reveals nothing
        if isinstance(value, list | tuple):
            return [MASK] * len(value)
        return MASK
    return _mask_value(value, depth)


def mask_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-named keys and URL passwords, nested values too."""
    return {key: _mask_item(key, value, 0) for key, value in event_dict.items()}


def _json_str(obj: Any, **kw: Any) -> str:
    return _json_bytes(obj, **kw).decode()


def _json_bytes(obj: Any, **kw: Any) -> bytes:
    return orjson.dumps(obj, default=kw.get("default"), option=orjson.OPT_NON_STR_KEYS)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):  # a closed or detached stream is no terminal
        return False


def configure_logging(
    fmt: str = "auto", level: str = "info", stream: TextIO | None = None, *, cache: bool = False
) -> None:
    """Configure structlog for the whole process; call once, at startup, before logging.

    ``fmt`` is auto (console on a TTY, JSON lines otherwise), console or json; ``level`` is
    debug, info, warning or error. Logs go to ``stream`` (standard error by default).
    """
    if fmt not in FORMATS:
        raise ConfigError("log.format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if level not in LEVELS:
        raise ConfigError("log.level", f"expected one of {', '.join(LEVELS)}, got {level!r}")
    out = sys.stderr if stream is None else stream
    console = fmt == "console" or (fmt == "auto" and _is_tty(out))
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _merge_task_fields,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    factory: Callable[..., WrappedLogger]
    if console:
        processors += [mask_secrets, structlog.dev.ConsoleRenderer(colors=_is_tty(out))]
        factory = structlog.WriteLoggerFactory(file=out)
    else:
        processors += [_TRACEBACKS, mask_secrets]
        binary = getattr(out, "buffer", None)
        if binary is not None:  # skip the str round trip when bytes can be written directly
            processors.append(structlog.processors.JSONRenderer(serializer=_json_bytes))
            factory = structlog.BytesLoggerFactory(file=binary)
        else:
            processors.append(structlog.processors.JSONRenderer(serializer=_json_str))
            factory = structlog.WriteLoggerFactory(file=out)
    _threshold[0] = LEVELS[level]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        context_class=dict,
        logger_factory=factory,
        # Cached only for a daemon: tests reconfigure, and module-level loggers already
        # used would otherwise keep writing to the old stream.
        cache_logger_on_first_use=cache,
    )


def bind_task(
    task_id: str, task_type: str, attempt: int, *, queue: str | None = None
) -> contextlib.AbstractContextManager[None]:
    """Bind a task's identity to every log line inside the block (per asyncio task)."""
    fields: dict[str, object] = {"task_id": task_id, "task_type": task_type, "attempt": attempt}
    if queue is not None:
        fields["queue"] = queue
    return structlog.contextvars.bound_contextvars(**fields)


def enabled(level: str) -> bool:
    """Whether lines at ``level`` are written: lets hot paths skip building them at all."""
    return LEVELS[level] >= _threshold[0]


def bind_task_fields(task_id: str, task_type: str, attempt: int) -> None:
    """Bind a task's identity for the rest of the current asyncio task (its own context
    copy, so nothing leaks): one context variable set per task, cheaper than
    :func:`bind_task`'s one per field; :func:`configure_logging`'s processors add them."""
    _TASK_FIELDS.set((task_id, task_type, attempt))


def _merge_task_fields(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    fields = _TASK_FIELDS.get()
    if fields is not None:
        event.setdefault("task_id", fields[0])
        event.setdefault("task_type", fields[1])
        event.setdefault("attempt", fields[2])
    return event
