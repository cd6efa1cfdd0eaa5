"""The settings dataclasses: every key taskd reads, its default and its allowed range.

Each field's range lives next to its default in the field metadata, so these classes are
the single source of truth for validation (taskd.config.load) and for taskd.toml.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from taskd.config.schedule import Schedule
from taskd.errors import ValidationError
from taskd.log import FORMATS, LEVELS, mask_url
from taskd.model import parse_queue_spec, parse_rate

_Check = Callable[[Any], str | None]


def _spec(
    *,
    lo: float | None = None,
    hi: float | None = None,
    gt: float | None = None,
    choices: tuple[str, ...] = (),
    check: _Check | None = None,
    secret: bool = False,
) -> dict[str, Any]:
    """Field metadata: inclusive bounds ``lo``/``hi``, exclusive ``gt``, allowed choices,
    an extra check returning a problem or None, and whether the value must never be shown."""
    return {"lo": lo, "hi": hi, "gt": gt, "choices": choices, "check": check, "secret": secret}


_URL_SCHEMES: Final = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
_ORIGIN: Final = re.compile(r"https?://[^/\s]+")


def _non_empty(text: str) -> str | None:
    return None if text.strip() else "must not be empty"


def _queue_names(names: tuple[str, ...]) -> str | None:
    if not names:
        return "needs at least one queue"
    for name in names:
        try:
            parse_queue_spec(name)
        except ValidationError:
            return (
                "expected queue names (A-Z a-z 0-9 _ . -, at most 64) with an optional "
                f"concurrency cap like 'emails:4', got {name!r}"
            )
    return None


def _rate_limits(specs: tuple[str, ...]) -> str | None:
    for spec in specs:
        try:
            parse_rate(spec)
        except ValidationError as exc:
            return exc.message.split(": ", 1)[-1]
    return None


def _module_names(names: tuple[str, ...]) -> str | None:
    bad = [n for n in names if not all(part.isidentifier() for part in n.split("."))]
    return f"expected dotted module names like 'myapp.jobs', got {bad[0]!r}" if bad else None


def _origins(origins: tuple[str, ...]) -> str | None:
    bad = [o for o in origins if o != "*" and not _ORIGIN.fullmatch(o)]
    return f"expected '*' or scheme://host[:port] without a path, got {bad[0]!r}" if bad else None


_HOST_NAME: Final = re.compile(r"(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")


def _host_patterns(entries: tuple[str, ...]) -> str | None:
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if not _HOST_NAME.fullmatch(entry):
                return (
                    "expected host names ('api.internal', '*.corp.example') or IP addresses/"
                    f"networks ('10.1.2.3', '10.0.0.0/8'), got {entry!r}"
                )
    return None


_ALLOWED_HOST: Final = re.compile(
    r"\*|(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[?[0-9A-Fa-f:.]+\]?"
)


def _allowed_hosts(entries: tuple[str, ...]) -> str | None:
    bad = [e for e in entries if not _ALLOWED_HOST.fullmatch(e)]
    if bad:
        return (
            "expected host names without a port ('taskd.example.com', '*.corp.example'), "
            f"IP addresses, or '*' for any, got {bad[0]!r}"
        )
    return None


def _redis_url(url: str) -> str | None:
    if not url:
        return None
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _URL_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in _URL_SCHEMES)
        return (
            f"expected a URL starting with {schemes} (or empty for embedded), got {mask_url(url)!r}"
        )
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """The HTTP/WebSocket listener and its request limits."""

    host: str = field(default="127.0.0.1", metadata=_spec(check=_non_empty))
    port: int = field(default=8000, metadata=_spec(lo=1, hi=65535))
    max_body_bytes: int = field(default=1048576, metadata=_spec(lo=1))
    allowed_origins: tuple[str, ...] = field(default=(), metadata=_spec(check=_origins))
    # Host header values accepted while the API is open without a token (DNS rebinding
    # defence); loopback names, the bound address and server.host are always accepted.
    allowed_hosts: tuple[str, ...] = field(default=(), metadata=_spec(check=_allowed_hosts))
    rate_limit_per_s: float = field(default=100.0, metadata=_spec(lo=0))  # 0 = off
    shutdown_grace_s: float = field(default=30.0, metadata=_spec(lo=0))
    request_timeout_s: float = field(default=1.0, metadata=_spec(gt=0))
    # Open connections at once (more get 503 and are closed), and seconds a connection
    # may take to send its first request's headers (then 408 and closed).
    max_connections: int = field(default=1024, metadata=_spec(lo=1))
    header_timeout_s: float = field(default=10.0, metadata=_spec(gt=0))
    # WebSocket clients at once (more get 503), and bytes queued to all of them together:
    # past it, a client with unsent data is dropped (1013) rather than buffered further.
    max_ws_clients: int = field(default=1000, metadata=_spec(lo=1))
    ws_queued_bytes: int = field(default=64 * 1024 * 1024, metadata=_spec(lo=1))
    # `taskd worker` only: port of its /healthz, /readyz, /metrics listener (0 = none)
    health_port: int = field(default=0, metadata=_spec(lo=0, hi=65535))


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSettings:
    """Where Redis is; an empty URL means a managed, embedded server."""

    url: str = field(default="", metadata=_spec(check=_redis_url))
    server_bin: str = ""
    cluster: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """How many tasks run at once, which handler modules to load, which queues to serve."""

    # 0: an API-only node (`taskd serve --workers 0`) that runs no tasks
    count: int = field(default=4, metadata=_spec(lo=0, hi=10000))
    handlers: tuple[str, ...] = field(default=(), metadata=_spec(check=_module_names))
    prefetch: int = field(default=0, metadata=_spec(lo=0))  # 0 = same as count
    queues: tuple[str, ...] = field(default=("default",), metadata=_spec(check=_queue_names))
    # Shared limits on task starts across all daemons: "api_call=20/s", "queue:emails=5/m:2"
    rate_limits: tuple[str, ...] = field(default=(), metadata=_spec(check=_rate_limits))


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSettings:
    """Per-task limits and the supervisor's timing."""

    max_retries: int = field(default=3, metadata=_spec(lo=0, hi=1000))
    timeout_s: float = field(default=300.0, metadata=_spec(gt=0))
    lease_s: float = field(default=30.0, metadata=_spec(gt=0))
    retention_s: float = field(default=86400.0, metadata=_spec(gt=0))
    backoff_base_s: float = field(default=1.0, metadata=_spec(lo=0))
    backoff_max_s: float = field(default=300.0, metadata=_spec(lo=0))
    sweep_interval_s: float = field(default=1.0, metadata=_spec(gt=0))
    progress_interval_s: float = field(default=0.1, metadata=_spec(lo=0))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    """Bearer tokens: full access, read-only access, and whether no token is allowed."""

    tokens: tuple[str, ...] = field(default=(), metadata=_spec(secret=True))
    read_tokens: tuple[str, ...] = field(default=(), metadata=_spec(secret=True))
    allow_anonymous: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """Log rendering (auto = console on a TTY, JSON lines otherwise) and threshold."""

    format: str = field(default="auto", metadata=_spec(choices=FORMATS))
    level: str = field(default="info", metadata=_spec(choices=tuple(LEVELS)))


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailSettings:
    """SMTP for the built-in email task; no host means .eml files in an outbox folder."""

    smtp_host: str = ""
    smtp_port: int = field(default=587, metadata=_spec(lo=1, hi=65535))
    smtp_user: str = ""
    smtp_password: str = field(default="", metadata=_spec(secret=True))
    starttls: bool = True
    use_tls: bool = False
    sender: str = field(default="taskd@localhost", metadata=_spec(check=_non_empty))
    timeout_s: float = field(default=30.0, metadata=_spec(gt=0))


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiCallSettings:
    """The built-in api_call task: which addresses it may reach and how much it reads."""

    # Host names ('*.corp.example') or networks ('10.0.0.0/8') reachable despite the
    # SSRF guard that otherwise refuses loopback, private, link-local and reserved ones.
    allow_hosts: tuple[str, ...] = field(default=(), metadata=_spec(check=_host_patterns))
    allow_private: bool = False  # loopback and private ranges; never link-local/metadata
    max_response_bytes: int = field(default=1048576, metadata=_spec(lo=1))
    max_redirects: int = field(default=5, metadata=_spec(lo=0, hi=30))


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSettings:
    """The sandbox that file tasks read from and write to."""

    root: str = ""  # empty = <data_dir>/files


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything taskd can be configured with; build it with :func:`load`."""

    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    tasks: TaskSettings = field(default_factory=TaskSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    log: LogSettings = field(default_factory=LogSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    api_call: ApiCallSettings = field(default_factory=ApiCallSettings)
    files: FileSettings = field(default_factory=FileSettings)
    data_dir: Path
    # [[schedule]] tables of the file (periodic tasks); see taskd.config.schedule.
    schedules: tuple[Schedule, ...] = ()

    @property
    def files_root(self) -> Path:
        """The file sandbox: ``files.root``, or ``<data_dir>/files`` when that is empty."""
        return Path(self.files.root) if self.files.root else self.data_dir / "files"
