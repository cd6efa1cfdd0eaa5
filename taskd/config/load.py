"""Building Settings: defaults < taskd.toml < environment < flags, each value validated.

A bad value stops startup with a one-line ConfigError naming the key, what was expected,
what was given and where it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from taskd.config.schedule import Schedule, parse_schedules
from taskd.config.settings import Settings, _Check, _spec
from taskd.errors import ConfigError
from taskd.log import MASK, mask_url

# Environment variables per setting; where several are set, the first listed wins. The
# seed's REDIS_HOST/PORT/DB/PASSWORD are assembled into redis.url by _redis_url_from_parts.
ENV_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "server.host": ("TASKD_HOST", "APP_HOST"),
    "server.port": ("TASKD_PORT", "APP_PORT"),
    "server.max_body_bytes": ("TASKD_MAX_BODY_BYTES",),
    "server.allowed_origins": ("TASKD_ALLOWED_ORIGINS",),
    "server.allowed_hosts": ("TASKD_ALLOWED_HOSTS",),
    "server.max_connections": ("TASKD_MAX_CONNECTIONS",),
    "server.header_timeout_s": ("TASKD_HEADER_TIMEOUT_S",),
    "server.max_ws_clients": ("TASKD_MAX_WS_CLIENTS",),
    "server.ws_queued_bytes": ("TASKD_WS_QUEUED_BYTES",),
    "server.rate_limit_per_s": ("TASKD_RATE_LIMIT_PER_S",),
    "server.request_timeout_s": ("TASKD_REQUEST_TIMEOUT_S",),
    "server.shutdown_grace_s": ("TASKD_SHUTDOWN_GRACE_S",),
    "server.health_port": ("TASKD_HEALTH_PORT",),
    "redis.url": ("TASKD_REDIS_URL", "REDIS_URL"),
    "redis.server_bin": ("TASKD_REDIS_SERVER_BIN",),
    "data_dir": ("TASKD_DATA_DIR",),
    "workers.count": ("TASKD_WORKERS", "WORKERS"),
    "workers.handlers": ("TASKD_HANDLERS",),
    "workers.queues": ("TASKD_QUEUES",),
    "workers.prefetch": ("TASKD_PREFETCH",),
    "workers.rate_limits": ("TASKD_RATE_LIMITS",),
    "tasks.max_retries": ("TASKD_MAX_RETRIES", "MAX_RETRIES"),
    "tasks.timeout_s": ("TASKD_TASK_TIMEOUT", "TASK_TIMEOUT"),
    "tasks.lease_s": ("TASKD_LEASE_S",),
    "tasks.retention_s": ("TASKD_RETENTION_S",),
    "tasks.sweep_interval_s": ("TASKD_SWEEP_INTERVAL_S",),
    "auth.tokens": ("TASKD_AUTH_TOKENS",),
    "auth.read_tokens": ("TASKD_READ_TOKENS",),
    "auth.allow_anonymous": ("TASKD_ALLOW_ANONYMOUS",),
    "log.format": ("TASKD_LOG_FORMAT",),
    "log.level": ("TASKD_LOG_LEVEL",),
    "email.smtp_host": ("TASKD_SMTP_HOST",),
    "email.smtp_port": ("TASKD_SMTP_PORT",),
    "email.smtp_user": ("TASKD_SMTP_USER",),
    "email.smtp_password": ("TASKD_SMTP_PASSWORD",),
    "files.root": ("TASKD_FILES_ROOT",),
    "api_call.allow_hosts": ("TASKD_API_CALL_ALLOW_HOSTS",),
    "api_call.allow_private": ("TASKD_API_CALL_ALLOW_PRIVATE",),
    "api_call.max_response_bytes": ("TASKD_API_CALL_MAX_RESPONSE_BYTES",),
}
_REDIS_PARTS: Final = ("REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD")
_TRUE: Final = frozenset({"1", "true", "yes"})
_FALSE: Final = frozenset({"0", "false", "no"})


@dataclass(frozen=True, slots=True)
class _Field:
    """One setting: its section (or "" for top level), name, type and constraints."""

    section: str
    name: str
    kind: Any
    meta: Mapping[str, Any]


def _field_table() -> dict[str, _Field]:
    table: dict[str, _Field] = {}
    top_hints = typing.get_type_hints(Settings)
    for top in dataclasses.fields(Settings):
        if top.name == "schedules":  # an array of tables, parsed by taskd.config.schedule
            continue
        kind = top_hints[top.name]
        if not dataclasses.is_dataclass(kind):
            table[top.name] = _Field("", top.name, kind, _spec())
            continue
        hints = typing.get_type_hints(kind)
        for f in dataclasses.fields(kind):
            meta = f.metadata or _spec()
            table[f"{top.name}.{f.name}"] = _Field(top.name, f.name, hints[f.name], meta)
    return table


_FIELDS: Final = _field_table()
_SECTIONS: Final = {f.section for f in _FIELDS.values() if f.section}


def _show(value: object, spec: _Field) -> str:
    if spec.meta["secret"]:
        return "<hidden>"
    text = repr(mask_url(value) if isinstance(value, str) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _expected(spec: _Field) -> str:
    meta = spec.meta
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    what = _KINDS[spec.kind][0]
    lo, hi, gt = meta["lo"], meta["hi"], meta["gt"]
    if lo is not None and hi is not None:
        return f"{what} from {lo:g} to {hi:g}"
    if lo is not None:
        return f"{what} >= {lo:g}"
    if gt is not None:
        return f"{what} > {gt:g}"
    return what


def _to_bool(raw: object, text: str | None) -> bool:
    if isinstance(raw, bool):
        return raw
    if text is not None and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    raise ValueError(raw)


def _to_int(raw: object, text: str | None) -> int:
    if text is not None:
        return int(text)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise ValueError(raw)


def _to_float(raw: object, text: str | None) -> float:
    number = float(text) if text is not None else raw
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ValueError(raw)
    if not math.isfinite(number):
        raise ValueError(raw)
    return float(number)


def _to_str(raw: object, _text: str | None) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError(raw)


def _to_path(raw: object, _text: str | None) -> Path:
    if isinstance(raw, str | Path) and str(raw).strip():
        return Path(raw)
    raise ValueError(raw)


def _to_strings(raw: object, text: str | None) -> tuple[str, ...]:
    if text is not None:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if isinstance(raw, list | tuple) and all(isinstance(i, str) and i.strip() for i in raw):
        return tuple(raw)
    raise ValueError(raw)


# Per field type: how it is described in errors, and how a raw value becomes one.
_KINDS: Final[Mapping[Any, tuple[str, Callable[[object, str | None], object]]]] = {
    bool: ("a boolean (true/false, yes/no, 1/0)", _to_bool),
    int: ("an integer", _to_int),
    float: ("a number", _to_float),
    str: ("a string", _to_str),
    Path: ("a path", _to_path),
    tuple[str, ...]: ("a list of strings", _to_strings),
}


def _convert(spec: _Field, raw: object, textual: bool) -> object:
    """Turn ``raw`` into the field's type; raise ValueError when it does not fit.

    ``textual`` sources (environment, command line) may give any type as a string; the
    TOML file must already use the right type.
    """
    text = raw.strip() if textual and isinstance(raw, str) and spec.kind is not str else None
    value = _KINDS[spec.kind][1](raw, text)
    if spec.meta["choices"] and isinstance(value, str):
        value = value.strip().lower()
    return value


def _problem(spec: _Field, value: Any, raw: object) -> str | None:
    """What is wrong with a converted ``value`` (shown as the ``raw`` input), or None."""
    meta = spec.meta
    lo, hi, gt = meta["lo"], meta["hi"], meta["gt"]
    if (
        (meta["choices"] and value not in meta["choices"])
        or (lo is not None and value < lo)
        or (hi is not None and value > hi)
        or (gt is not None and value <= gt)
    ):
        return _mismatch(spec, raw)
    check: _Check | None = meta["check"]
    return check(value) if check else None


def _mismatch(spec: _Field, raw: object) -> str:
    return f"expected {_expected(spec)}, got {_show(raw, spec)}"


class _Layers:
    """The values gathered so far, per dotted key; each source applies itself on top."""

    def __init__(self, home: Path) -> None:
        self.values: dict[str, object] = {}
        self.home = home
        self.schedules: tuple[Schedule, ...] = ()

    def apply(self, key: str, raw: object, origin: str, *, textual: bool) -> None:
        spec = _FIELDS.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, [*_FIELDS, *_SECTIONS], n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(key, f"unknown setting ({origin}){hint}")
        try:
            value = _convert(spec, raw, textual)
        except (ValueError, TypeError):
            problem: str | None = _mismatch(spec, raw)
        else:
            problem = _problem(spec, value, raw)
        if problem is not None:
            raise ConfigError(key, f"{problem} ({origin})")
        if isinstance(value, Path) and value.parts[0] == "~":
            value = self.home.joinpath(*value.parts[1:])  # HOME from env, not os.environ
        self.values[key] = value


def _read_file(path: Path, layers: _Layers) -> None:
    origin = f"in {path}"
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None
    for name, value in document.items():
        if name == "schedule":
            layers.schedules = parse_schedules(value, origin)
        elif name not in _SECTIONS:
            layers.apply(name, value, origin, textual=False)
        elif not isinstance(value, dict):
            raise ConfigError(name, f"expected a [{name}] table, got {value!r} ({origin})")
        else:
            for sub, item in value.items():
                layers.apply(f"{name}.{sub}", item, origin, textual=False)


def _redis_url_from_parts(env: Mapping[str, str]) -> str | None:
    """Build redis.url from the seed's REDIS_HOST/PORT/DB/PASSWORD, if any of them is set."""
    parts = {name: env.get(name, "").strip() for name in _REDIS_PARTS}
    if not any(parts.values()):
        return None
    host = parts["REDIS_HOST"] or "localhost"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    port = _env_int(parts, "REDIS_PORT", 6379, 1, 65535)
    db = _env_int(parts, "REDIS_DB", 0, 0, 2**31 - 1)
    password = parts["REDIS_PASSWORD"]
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def _env_int(parts: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    text = parts[name]
    try:
        number = int(text) if text else default
    except ValueError:
        number = lo - 1
    if not lo <= number <= hi:
        raise ConfigError(
            "redis.url", f"expected an integer from {lo} to {hi}, got {text!r} (from env {name})"
        )
    return number


def _read_env(env: Mapping[str, str], layers: _Layers) -> None:
    """Apply the environment; empty variables count as unset (as compose files leave them)."""
    for key, names in ENV_NAMES.items():
        name = next((n for n in names if env.get(n, "").strip()), None)
        if name is not None:
            layers.apply(key, env[name], f"from env {name}", textual=True)
        elif key == "redis.url" and (url := _redis_url_from_parts(env)) is not None:
            layers.apply(key, url, "from env REDIS_HOST/PORT/DB/PASSWORD", textual=True)


def _default_data_dir(env: Mapping[str, str], home: Path) -> Path:
    xdg = env.get("XDG_DATA_HOME", "").strip()
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / "taskd"


def _build(
    values: Mapping[str, object], data_dir: Path, schedules: tuple[Schedule, ...] = ()
) -> Settings:
    sections: dict[str, dict[str, object]] = {name: {} for name in _SECTIONS}
    for key, value in values.items():
        spec = _FIELDS[key]
        if spec.section:
            sections[spec.section][spec.name] = value
    hints = typing.get_type_hints(Settings)
    built = {name: hints[name](**kwargs) for name, kwargs in sections.items()}
    settings = Settings(**built, data_dir=data_dir, schedules=schedules)
    _cross_check(settings)
    return settings


def _cross_check(settings: Settings) -> None:
    tasks, email = settings.tasks, settings.email
    if tasks.backoff_max_s < tasks.backoff_base_s:
        raise ConfigError(
            "tasks.backoff_max_s",
            f"must be >= tasks.backoff_base_s ({tasks.backoff_base_s:g}), "
            f"got {tasks.backoff_max_s:g}",
        )
    if email.use_tls and email.starttls:
        raise ConfigError(
            "email.use_tls",
            "implicit TLS cannot be combined with email.starttls; set starttls = false",
        )


def load(path: Path | None, env: Mapping[str, str], flags: Mapping[str, object]) -> Settings:
    """Build the settings: defaults, then the TOML file, then ``env``, then ``flags``.

    The file is ``path`` or else ``env["TASKD_CONFIG"]``; with neither, no file is read.
    ``flags`` maps dotted names (``"server.port"``, ``"data_dir"``) to values; None means
    "not given". Raises ConfigError on the first unknown key or bad value.
    """
    home_text = env.get("HOME", "").strip()
    home = Path(home_text) if home_text else Path.home()
    layers = _Layers(home)
    named = path if path is not None else env.get("TASKD_CONFIG", "").strip() or None
    if named is not None:
        _read_file(Path(named), layers)
    _read_env(env, layers)
    for key, value in flags.items():
        if value is not None:
            layers.apply(key, value, "from command line", textual=True)
    values = dict(layers.values)
    data_dir = values.pop("data_dir", None)
    if not isinstance(data_dir, Path):
        data_dir = _default_data_dir(env, home)
    return _build(values, data_dir, layers.schedules)


def as_dict(settings: Settings) -> dict[str, Any]:
    """The settings as plain JSON-ready data for a startup log line, secrets masked."""
    result: dict[str, Any] = {"data_dir": str(settings.data_dir)}
    for spec in _FIELDS.values():
        if not spec.section:
            continue
        value = getattr(getattr(settings, spec.section), spec.name)
        if spec.meta["secret"] and value:
            value = [MASK] * len(value) if isinstance(value, tuple) else MASK
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, str):
            value = mask_url(value)
        result.setdefault(spec.section, {})[spec.name] = value
    return result
