"""Periodic tasks: ``[[schedule]]`` entries of taskd.toml, and when each occurrence falls.

Occurrences are aligned to the clock (a cron expression, or multiples of ``every_s``
since the epoch), so every daemon computes the same ones and a unique key per occurrence
makes exactly one of them enqueue it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taskd.config.cron import Cron
from taskd.errors import ConfigError, ValidationError
from taskd.model import DEFAULT_PRIORITY, QUEUE_NAME, TASK_TYPE_NAME

NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
KEYS = {"name", "task_type", "payload", "cron", "every_s", "queue", "priority"}


@dataclass(frozen=True, slots=True)
class Schedule:
    """One periodic task."""

    name: str
    task_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    every_s: float | None = None
    queue: str = "default"
    priority: int = DEFAULT_PRIORITY

    def latest_ms(self, now_ms: int) -> int:
        """The most recent occurrence at or before ``now_ms`` (epoch milliseconds)."""
        if self.every_s is not None:
            step = int(self.every_s * 1000)
            return now_ms - now_ms % step
        assert self.cron is not None
        moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
        return int(Cron.parse(self.cron).latest_at_or_before(moment).timestamp() * 1000)

    def next_ms(self, now_ms: int) -> int:
        """The first occurrence strictly after ``now_ms``."""
        if self.every_s is not None:
            step = int(self.every_s * 1000)
            return now_ms - now_ms % step + step
        assert self.cron is not None
        moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
        return int(Cron.parse(self.cron).next_after(moment).timestamp() * 1000)


def parse_schedules(raw: object, origin: str) -> tuple[Schedule, ...]:
    """Validate the ``schedule`` array of tables; ConfigError names the bad entry's key."""
    if not isinstance(raw, list):
        raise ConfigError("schedule", f"expected [[schedule]] tables ({origin})")
    found: list[Schedule] = []
    for i, entry in enumerate(raw):
        where = f"schedule[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, f"expected a table ({origin})")
        unknown = set(entry) - KEYS
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", f"unknown setting ({origin})")
        try:
            found.append(_one(entry))
        except ValidationError as exc:
            raise ConfigError(
                f"{where}.{exc.field}", f"{exc.message.split(': ', 1)[-1]} ({origin})"
            ) from None
    names = [s.name for s in found]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError("schedule", f"duplicate name {sorted(duplicates)[0]!r} ({origin})")
    return tuple(found)


def _one(entry: dict[str, Any]) -> Schedule:
    name, task_type = entry.get("name"), entry.get("task_type")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValidationError("name", "required: 1-100 letters, digits, _ . -")
    if not isinstance(task_type, str) or not TASK_TYPE_NAME.fullmatch(task_type):
        raise ValidationError("task_type", "required: a task type name")
    payload = entry.get("payload", {})
    if not isinstance(payload, dict):
        raise ValidationError("payload", "must be a table")
    cron, every = entry.get("cron"), entry.get("every_s")
    if (cron is None) == (every is None):
        raise ValidationError("cron", "give exactly one of cron or every_s")
    if cron is not None:
        if not isinstance(cron, str):
            raise ValidationError("cron", "must be a string")
        # Parsing checks each field alone; a date no month has (February 31st) only shows
        # when looking for an occurrence, which must fail here, not in a running daemon.
        Cron.parse(cron).next_after(datetime.now(UTC))
    if every is not None and (
        isinstance(every, bool)
        or not isinstance(every, int | float)
        or not math.isfinite(every)  # TOML has inf and nan
        or every < 1
    ):
        raise ValidationError("every_s", "must be a number of seconds >= 1")
    queue = entry.get("queue", "default")
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
        raise ValidationError("queue", "bad queue name")
    priority = entry.get("priority", DEFAULT_PRIORITY)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 10:
        raise ValidationError("priority", "must be an integer from 1 to 10")
    return Schedule(
        name, task_type, payload, cron, None if every is None else float(every), queue, priority
    )
