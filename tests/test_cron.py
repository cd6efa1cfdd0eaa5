"""Cron expressions: parsing errors and next/previous occurrences."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskd.config.cron import Cron
from taskd.errors import ValidationError


def at(text: str) -> datetime:
    """A UTC datetime from 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "now", "expected"),
    [
        ("*/15 * * * *", "2026-01-01 10:07", "2026-01-01 10:15"),
        ("0 9 * * mon-fri", "2026-01-02 09:00", "2026-01-05 09:00"),  # Friday -> Monday
        ("30 2 1 * *", "2026-01-31 00:00", "2026-02-01 02:30"),
        ("0 0 29 feb *", "2026-03-01 00:00", "2028-02-29 00:00"),
        ("@hourly", "2026-01-01 10:59", "2026-01-01 11:00"),
        ("0 12 13 * 5", "2026-01-01 00:00", "2026-01-02 12:00"),  # 13th OR Friday
    ],
)
def test_next_after(expr: str, now: str, expected: str) -> None:
    """next_after finds the first matching minute strictly after the moment."""
    assert Cron.parse(expr).next_after(at(now)) == at(expected)


def test_latest_at_or_before_includes_the_moment() -> None:
    """latest_at_or_before returns the moment itself when it matches."""
    cron = Cron.parse("0 * * * *")
    assert cron.latest_at_or_before(at("2026-01-01 10:00")) == at("2026-01-01 10:00")
    assert cron.latest_at_or_before(at("2026-01-01 10:59")) == at("2026-01-01 10:00")


@pytest.mark.parametrize(
    "expr", ["* * * *", "61 * * * *", "*/0 * * * *", "a b c d e", "0 0 31 2 *"]
)
def test_bad_expressions_are_refused(expr: str) -> None:
    """Malformed or impossible expressions raise ValidationError."""
    with pytest.raises(ValidationError):
        Cron.parse(expr).next_after(at("2026-01-01 00:00"))
