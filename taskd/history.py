"""Per-minute metrics history: the layout the scripts write and what is read back.

The enqueue, complete, fail and reclaim scripts count into one hash field per queue,
minute and task type (``record_history`` in ``scripts/_lib.lua``), packed as
``submitted,completed,failed,h1,...,hN``: the counts, then a histogram of completed
tasks' run times over :data:`RUN_BOUNDS_MS` (log-spaced 1-2-5 steps; the last slot is
"longer than the last bound"). A histogram merges by addition over minutes, task types and
queues, so p50/p95 of any range come out of it without storing a single sample, within
the width of one bucket.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, Final

BUCKET_S: Final = 60
RETENTION_MINUTES: Final = 7 * 24 * 60  # what the API serves; the scripts keep 8 days
# Must equal RUN_BOUNDS_MS in scripts/_lib.lua (tests/test_history.py checks it).
RUN_BOUNDS_MS: Final = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000,
    50_000, 100_000, 200_000, 500_000, 1_000_000,
)  # fmt: skip
SLOTS: Final = len(RUN_BOUNDS_MS) + 1


class Counts:
    """What happened in one minute (or the sum of several): the packed layout unpacked,
    ``submitted, completed, failed`` then the run-time histogram (a flat list: a week of
    minutes is summed in a few milliseconds)."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values = [0] * (3 + SLOTS)

    @classmethod
    def decode(cls, packed: str) -> Counts:
        """Counts from a history field's value (missing trailing slots are zeros)."""
        counts = cls()
        counts.add_packed(packed)
        return counts

    def add_packed(self, packed: str) -> None:
        """Add a history field's value into these counts."""
        values = self.values
        for i, v in enumerate(packed.split(",")[: len(values)]):
            values[i] += int(v)

    def add(self, other: Counts) -> None:
        """Add ``other`` into these counts."""
        values = self.values
        for i, v in enumerate(other.values):
            if v:
                values[i] += v

    @property
    def submitted(self) -> int:
        """Tasks created."""
        return self.values[0]

    @property
    def completed(self) -> int:
        """Tasks completed."""
        return self.values[1]

    @property
    def failed(self) -> int:
        """Tasks failed for good."""
        return self.values[2]

    @property
    def runs(self) -> list[int]:
        """Completions per run-time bucket (RUN_BOUNDS_MS, then longer)."""
        return self.values[3:]


def percentile(runs: list[int], q: float) -> float | None:
    """The ``q`` quantile (0-1) of run time in ms, interpolated inside its bucket.

    Geometric interpolation suits log-spaced buckets; the first bucket (0-1 ms) is linear,
    and the open last one answers its lower bound. None when nothing completed.
    """
    total = sum(runs)
    if total == 0:
        return None
    rank = max(q * total, 1e-9)
    below = 0
    for i, n in enumerate(runs):
        if n and below + n >= rank:
            fraction = (rank - below) / n
            if i == len(RUN_BOUNDS_MS):
                return float(RUN_BOUNDS_MS[-1])
            high = RUN_BOUNDS_MS[i]
            if i == 0:
                return round(high * fraction, 1)
            low = RUN_BOUNDS_MS[i - 1]
            return round(float(low * (high / low) ** fraction), 1)
        below += n
    return float(RUN_BOUNDS_MS[-1])  # unreachable: rank <= total


def parse_field(name: str) -> tuple[int, str]:
    """(minute, task type) of a history field name."""
    minute, _, task_type = name.partition(":")
    return int(minute), task_type


def sum_by_minute(rows: list[tuple[int, str]]) -> dict[int, Counts]:
    """Packed fields (minute, value) summed per minute (over queues and task types)."""
    by_minute: dict[int, Counts] = {}
    for minute, packed in rows:
        counts = by_minute.get(minute)
        if counts is None:
            counts = by_minute[minute] = Counts()
        counts.add_packed(packed)
    return by_minute


def shape(by_minute: dict[int, Counts], first: int, last: int, bucket_s: int) -> dict[str, Any]:
    """The API answer: one entry per ``bucket_s`` from minute ``first`` to ``last``.

    Buckets are aligned to multiples of ``bucket_s`` since the epoch, so the same range
    asked twice gives the same buckets; empty ones are listed with zeros (a chart needs no
    gap filling).
    """
    step = bucket_s // BUCKET_S
    buckets = []
    for at in range(first - first % step, last + 1, step):
        if step == 1:
            total = by_minute.get(at) or Counts()
        else:
            total = Counts()
            for minute in range(max(at, first), min(at + step, last + 1)):
                if minute in by_minute:
                    total.add(by_minute[minute])
        p50 = p95 = None
        if total.completed:
            runs = total.runs
            p50, p95 = percentile(runs, 0.5), percentile(runs, 0.95)
        buckets.append(
            {
                "at": _iso_minute(at),
                "submitted": total.submitted,
                "completed": total.completed,
                "failed": total.failed,
                "run_ms_p50": p50,
                "run_ms_p95": p95,
            }
        )
    return {"bucket_s": bucket_s, "buckets": buckets}


@functools.lru_cache(maxsize=16)
def _iso_day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%dT")


def _iso_minute(minute: int) -> str:
    # strftime per minute costs more than the rest of a week's answer together.
    day, rest = divmod(minute, 1440)
    return f"{_iso_day(day)}{rest // 60:02d}:{rest % 60:02d}:00Z"
