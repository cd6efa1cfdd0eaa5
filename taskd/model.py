"""The task record, its statuses and legal transitions, and the submit specification.

Redis stores a task as one hash of strings; timestamps there are integer milliseconds of
Redis's own clock (``TIME``). The API shows them as ISO-8601 UTC.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from taskd.errors import ValidationError

MIN_PRIORITY = 1
MAX_PRIORITY = 10
DEFAULT_PRIORITY: Final = 5  # of a task submitted without one
DEFAULT_QUEUE = "default"
MAX_NAME_LEN = 200
MAX_UNIQUE_KEY_LEN = 200
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
TASK_TYPE_NAME = re.compile(r"^[A-Za-z0-9_.\-:]{1,100}$")
TASK_ID = re.compile(r"^[0-9a-f]{32}$")


class Status(StrEnum):
    """Where a task is in its lifecycle (DESIGN.md, "The task")."""

    PENDING = "pending"
    #: A workflow task whose dependencies have not all finished.
    WAITING = "waiting"
    SCHEDULED = "scheduled"
    #: Held by a worker (in its prefetch buffer) but not started: cancelled at once when
    #: asked, handed back on shutdown without using an attempt, never a busy slot.
    RESERVED = "reserved"
    #: A handler is running now.
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Finished tasks never run again unless retried by hand, and expire after retention."""
        return self in FINISHED


STATUS_NAMES = tuple(s.value for s in Status)
FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


def parse_statuses(value: str | Iterable[str]) -> frozenset[Status]:
    """``"failed,cancelled"`` or ``["failed", "cancelled"]`` -> the statuses it names.

    One parser for the API's ``?status=`` and the clients' ``list(status=...)``, so both
    accept the same values and refuse the same ones with the same message.
    """
    names = value.split(",") if isinstance(value, str) else list(value)
    wanted = {n.strip() for n in names if isinstance(n, str) and n.strip()}
    typed = all(isinstance(n, str) for n in names)
    if not typed or not wanted or not wanted <= set(STATUS_NAMES):
        raise ValidationError("status", f"must be among {', '.join(STATUS_NAMES)}")
    return frozenset(Status(n) for n in wanted)


def parse_queue_spec(spec: str) -> tuple[str, int | None]:
    """``"emails:4"`` -> ("emails", 4): a queue name and its optional concurrency cap."""
    name, _, cap = spec.partition(":")
    if not QUEUE_NAME.fullmatch(name):
        raise ValidationError("queue", f"bad queue name {name!r}")
    if not cap:
        return name, None
    if not cap.isdigit() or int(cap) < 1:
        raise ValidationError("queue", f"bad concurrency cap {cap!r} for queue {name!r}")
    return name, int(cap)


def parse_rate(spec: str) -> tuple[str, float, int]:
    """``"api_call=20/s"``, ``"queue:emails=100/m:10"`` -> (scope, per second, burst).

    The scope is a task type, or ``queue:<name>`` for every task of a queue.
    """
    scope, sep, rest = spec.partition("=")
    rate, _, burst = rest.partition(":")
    amount, _, unit = rate.partition("/")
    seconds = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}.get(unit.strip())
    try:
        per_second = float(amount) / seconds if seconds else -1.0
        burst_n = int(burst) if burst else 1
    except ValueError:
        per_second, burst_n = -1.0, 0
    if not sep or not scope.strip() or per_second <= 0 or burst_n < 1:
        raise ValidationError("rate_limits", f"expected TYPE=N/s[:burst], got {spec!r}")
    return scope.strip(), per_second, burst_n


class _RandomIds:
    """128-bit ids cut from os.urandom read 4 KiB at a time: one system call per 256 ids
    (batch submits make thousands, and the call is slow on some kernels). A forked child
    starts with an empty buffer, so it never repeats its parent's ids."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hex = ""
        self._at = 0

    def clear(self) -> None:
        self._hex, self._at = "", 0

    def next(self) -> str:
        with self._lock:
            if self._at >= len(self._hex):
                self._hex, self._at = os.urandom(4096).hex(), 0
            self._at += 32
            return self._hex[self._at - 32 : self._at]


_ids = _RandomIds()
os.register_at_fork(after_in_child=_ids.clear)


def new_task_id() -> str:
    """Random 128-bit id as 32 hex digits: unguessable, URL-safe, fixed length."""
    return _ids.next()


def ms_to_iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch to ISO-8601 UTC with millisecond precision."""
    if ms is None:
        return None
    return _iso(ms)


@functools.lru_cache(maxsize=4096)
def _iso(ms: int) -> str:
    # Cached: the tasks of a batch or a page share their timestamps to the millisecond.
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def iso_to_ms(value: str, field_name: str) -> int:
    """Parse an ISO-8601 timestamp (naive means UTC) into epoch milliseconds."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise ValidationError(field_name, f"not an ISO-8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


@dataclass(slots=True)
class Task:
    """One task as stored in Redis, with its fencing ``attempt`` and stream entry ``sid``."""

    id: str
    name: str
    task_type: str
    queue: str
    priority: int
    payload: dict[str, Any]
    status: Status
    progress: int = 0
    progress_message: str = ""
    result: Any = None
    error: str | None = None
    retry_count: int = 0
    max_retries: int = 3
    timeout_s: float = 300.0
    created_at: int = 0
    updated_at: int = 0
    started_at: int | None = None
    completed_at: int | None = None
    run_at: int | None = None
    worker: str | None = None
    unique_key: str | None = None
    attempt: int = 0
    sid: str = ""
    cancel_requested: bool = False
    workflow_id: str | None = None
    wf_key: str | None = None
    depends_on: list[str] | None = None
    #: key -> (queue, id) of the tasks it depends on (workflow tasks only).
    parents: dict[str, tuple[str, str]] | None = None
    run_on_failure: bool = False

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> Task:
        """Build from HGETALL's reply (bytes or str keys)."""
        if all(type(k) is str for k in raw):  # decode_responses: already text
            return cls._from_text(raw)  # type: ignore[arg-type]
        return cls._from_text({_text(k): _text(v) for k, v in raw.items()})

    @classmethod
    def from_flat(cls, flat: list[Any]) -> Task:
        """Build from a script's flat ``[field, value, ...]`` reply (text: taskd's clients
        decode responses). On the fetch path for every task, hence kept lean."""
        return cls._from_text(dict(zip(flat[::2], flat[1::2], strict=True)))

    @classmethod
    def _from_text(cls, h: dict[str, str]) -> Task:
        get = h.get
        result = get("result")
        payload = get("payload")
        status = get("status", "pending")
        return cls(
            id=h["id"],
            name=get("name", ""),
            task_type=get("task_type", ""),
            queue=get("queue", DEFAULT_QUEUE),
            priority=int(get("priority") or DEFAULT_PRIORITY),
            payload=orjson.loads(payload) if payload else {},
            status=_STATUSES.get(status) or Status(status),  # unknown: ValueError
            progress=int(get("progress") or 0),
            progress_message=get("progress_message", ""),
            result=orjson.loads(result) if result else None,
            error=get("error") or None,
            retry_count=int(get("retry_count") or 0),
            max_retries=int(get("max_retries") or 0),
            timeout_s=float(get("timeout_s") or 0),
            created_at=int(get("created_at") or 0),
            updated_at=int(get("updated_at") or 0),
            started_at=_opt_int(get("started_at")),
            completed_at=_opt_int(get("completed_at")),
            run_at=_opt_int(get("run_at")),
            worker=get("worker") or None,
            unique_key=get("unique_key") or None,
            attempt=int(get("attempt") or 0),
            sid=get("sid", ""),
            cancel_requested=get("cancel") == "1",
            **(_flow_fields(h) if "workflow_id" in h else {}),
        )

    def to_api(self) -> dict[str, Any]:
        """The public JSON shape (seed-compatible field names, ISO timestamps)."""
        return {
            "id": self.id,
            "name": self.name,
            "task_type": self.task_type,
            "queue": self.queue,
            "priority": self.priority,
            "payload": self.payload,
            "status": str(self.status),
            "progress": self.progress,
            "progress_message": self.progress_message,
            "result": self.result,
            "error": self.error,
            "retry_count": self.retry_count,
            "max_retries": self.max_retries,
            "timeout_s": self.timeout_s,
            "attempt": self.attempt,
            "created_at": ms_to_iso(self.created_at),
            "updated_at": ms_to_iso(self.updated_at),
            "started_at": ms_to_iso(self.started_at),
            "completed_at": ms_to_iso(self.completed_at),
            "run_at": ms_to_iso(self.run_at),
            "worker": self.worker,
            "unique_key": self.unique_key,
            "cancel_requested": self.cancel_requested,
            "workflow_id": self.workflow_id,
            "depends_on": self.depends_on,
        }


def _flow_fields(h: dict[str, str]) -> dict[str, Any]:
    """The workflow fields of a task hash (see scripts/_flow.lua)."""
    parents = orjson.loads(h.get("parents") or "{}")
    return {
        "workflow_id": h["workflow_id"],
        "wf_key": h.get("wf_key"),
        "depends_on": orjson.loads(h.get("depends_on") or "[]"),
        "parents": {key: (ref[0], ref[1]) for key, ref in parents.items()},
        "run_on_failure": h.get("run_on_failure") == "1",
    }


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


_STATUSES: Final[dict[str, Status]] = {status.value: status for status in Status}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(slots=True)  # not frozen: its generated __init__ was half of make_spec's time
class TaskSpec:
    """A validated request to create one task; build it with :func:`make_spec` and treat
    it as read-only."""

    id: str
    name: str
    task_type: str
    queue: str
    priority: int
    payload_json: bytes
    payload: dict[str, Any]
    max_retries: int
    timeout_s: float
    delay_ms: int | None = None
    run_at_ms: int | None = None
    unique_key: str | None = None


# The fields a submit may carry, for every caller (HTTP API, Client, SyncClient): one list,
# so a field added to make_spec is accepted everywhere at once.
SUBMIT_FIELDS: Final = frozenset(
    {
        "task_type",
        "payload",
        "name",
        "priority",
        "queue",
        "delay_s",
        "run_at",
        "max_retries",
        "timeout_s",
        "unique_key",
    }
)


def make_spec(  # noqa: PLR0912 - one branch per validated field reads best
    task_type: Any,
    payload: Any = None,
    *,
    name: Any = None,
    priority: Any = DEFAULT_PRIORITY,
    queue: Any = DEFAULT_QUEUE,
    delay_s: Any = None,
    run_at: Any = None,
    max_retries: Any = None,
    timeout_s: Any = None,
    unique_key: Any = None,
    default_max_retries: int = 3,
    default_timeout_s: float = 300.0,
    max_payload_bytes: int = 1024 * 1024,
) -> TaskSpec:
    """Validate submit arguments from any caller (client, REST, CLI); raise ValidationError."""
    if not isinstance(task_type, str) or not TASK_TYPE_NAME.fullmatch(task_type):
        raise ValidationError("task_type", "must be 1-100 characters of letters, digits, _.-:")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ValidationError("payload", "must be a JSON object")
    try:
        payload_json = orjson.dumps(payload)
    except TypeError as exc:
        raise ValidationError("payload", f"not JSON-serialisable: {exc}") from None
    # orjson writes NaN and infinities as null; the API refuses them as malformed JSON.
    if b"null" in payload_json and _non_finite(payload):
        raise ValidationError("payload", "NaN and infinite numbers are not JSON")
    if len(payload_json) > max_payload_bytes:
        raise ValidationError("payload", f"larger than {max_payload_bytes} bytes")
    if name is None:
        name = task_type
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LEN:
        raise ValidationError("name", f"must be a string of 1-{MAX_NAME_LEN} characters")
    priority = _int_in("priority", priority, MIN_PRIORITY, MAX_PRIORITY)
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
        raise ValidationError("queue", "must be 1-64 characters of letters, digits, _.-")
    retries = default_max_retries if max_retries is None else max_retries
    retries = _int_in("max_retries", retries, 0, 1000)
    timeout = default_timeout_s if timeout_s is None else _number("timeout_s", timeout_s)
    if not 0 < timeout <= 7 * 86400:
        raise ValidationError("timeout_s", "must be > 0 and at most 7 days")
    if delay_s is not None and run_at is not None:
        raise ValidationError("run_at", "give either delay_s or run_at, not both")
    delay_ms = None
    if delay_s is not None:
        delay = _number("delay_s", delay_s)
        if not 0 <= delay <= 365 * 86400:
            raise ValidationError("delay_s", "must be between 0 and one year")
        delay_ms = int(delay * 1000)
    run_at_ms = None
    if run_at is not None:
        if not isinstance(run_at, str):
            raise ValidationError("run_at", "must be an ISO-8601 timestamp string")
        run_at_ms = iso_to_ms(run_at, "run_at")
    if unique_key is not None and (
        not isinstance(unique_key, str) or not 0 < len(unique_key) <= MAX_UNIQUE_KEY_LEN
    ):
        raise ValidationError("unique_key", f"must be a string of 1-{MAX_UNIQUE_KEY_LEN} chars")
    return TaskSpec(
        id=new_task_id(),
        name=name,
        task_type=task_type,
        queue=queue,
        priority=priority,
        payload_json=payload_json,
        payload=payload,
        max_retries=retries,
        timeout_s=timeout,
        delay_ms=delay_ms,
        run_at_ms=run_at_ms,
        unique_key=unique_key,
    )


def _non_finite(value: Any) -> bool:
    """Whether a NaN or an infinity hides anywhere in a JSON-like value."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


def _number(field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(field_name, "must be a number")
    return float(value)


def _int_in(field_name: str, value: Any, low: int, high: int) -> int:
    # 5.0 is an integer to JSON Schema (and so to the OpenAPI description): accept it.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(field_name, f"must be an integer from {low} to {high}")
    return value


def int_in(field_name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int within [low, high] (integral floats too), else ValidationError."""
    return _int_in(field_name, value, low, high)


def int_from_text(field_name: str, raw: str, low: int, high: int) -> int:
    """A query parameter as an int within [low, high]: ``100``, also ``100.0`` or ``1e2``
    (JSON Schema integers, as a generated client may send them)."""
    try:
        value: Any = int(raw)
    except ValueError:
        try:
            value = float(raw)
        except ValueError:
            raise ValidationError(field_name, "must be an integer") from None
        if not math.isfinite(value) or not value.is_integer():
            raise ValidationError(field_name, "must be an integer") from None
    return _int_in(field_name, value, low, high)
