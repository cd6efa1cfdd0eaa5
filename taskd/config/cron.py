"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Supports ``*``, lists ``a,b``, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, month and
weekday names, ``@hourly``-style aliases, and cron's rule that when both day fields are
restricted a day matches if either does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taskd.errors import ValidationError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
NO_NAMES: list[str] = []
FIELDS: tuple[tuple[str, int, int, list[str]], ...] = (
    ("minute", 0, 59, NO_NAMES),
    ("hour", 0, 23, NO_NAMES),
    ("day of month", 1, 31, NO_NAMES),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
)
SEARCH_DAYS = 366 * 5  # covers every valid expression, including Feb 29


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse an expression; ValidationError names what is wrong."""
        parts = ALIASES.get(text.strip().lower(), text).split()
        if len(parts) != 5:
            raise ValidationError("cron", f"expected 5 fields, got {len(parts)} in {text!r}")
        sets = [_field(part, *spec) for part, spec in zip(parts, FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
        return cls(
            sets[0],
            sets[1],
            sets[2],
            sets[3],
            weekdays,
            any_day=parts[2] == "*",
            any_weekday=parts[4] == "*",
        )

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment``."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ValidationError("cron", "expression never matches")

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last matching minute at or before ``moment``."""
        end = moment.astimezone(UTC).replace(second=0, microsecond=0)
        day = end.replace(hour=0, minute=0)
        for _ in range(SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours, reverse=True):
                    for minute in sorted(self.minutes, reverse=True):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate <= end:
                            return candidate
            day -= timedelta(days=1)
        raise ValidationError("cron", "expression never matches")


def _field(text: str, name: str, low: int, high: int, names: list[str]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.lower().split(","):
        span, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                first, last = low, high
            elif "-" in span:
                a, b = span.split("-", 1)
                first, last = _value(a, names, low), _value(b, names, low)
            else:
                first = _value(span, names, low)
                last = high if step_text else first
        except ValueError:
            raise ValidationError("cron", f"bad {name} field {text!r}") from None
        if step < 1 or not low <= first <= last <= high:
            raise ValidationError("cron", f"{name} field {text!r} out of range {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _value(text: str, names: list[str], low: int) -> int:
    if text in names:
        return names.index(text) + low
    return int(text)
