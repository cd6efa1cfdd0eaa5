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

from dataclasses import dataclass, field
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


@dataclass
class Counts:
    """What happened in one minute (or the sum of several)."""

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    runs: list[int] = field(default_factory=lambda: [0] * SLOTS)

    @classmethod
    def decode(cls, packed: str) -> Counts:
        """Counts from a history field's value (missing trailing slots are zeros)."""
        values = [int(v) for v in packed.split(",")] + [0] * (3 + SLOTS)
        return cls(values[0], values[1], values[2], values[3 : 3 + SLOTS])

    def add(self, other: Counts) -> None:
        """Add ``other`` into these counts."""
        self.submitted += other.submitted
        self.completed += other.completed
        self.failed += other.failed
        self.runs = [a + b for a, b in zip(self.runs, other.runs, strict=True)]


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


def shape(by_minute: dict[int, Counts], first: int, last: int, bucket_s: int) -> dict[str, Any]:
    """The API answer: one entry per ``bucket_s`` from minute ``first`` to ``last``.

    Buckets are aligned to multiples of ``bucket_s`` since the epoch, so the same range
    asked twice gives the same buckets; empty ones are listed with zeros (a chart needs no
    gap filling).
    """
    step = bucket_s // BUCKET_S
    start = first - first % step
    buckets = []
    for at in range(start, last + 1, step):
        total = Counts()
        for minute in range(max(at, first), min(at + step, last + 1)):
            if minute in by_minute:
                total.add(by_minute[minute])
        buckets.append(
            {
                "at": _iso_minute(at),
                "submitted": total.submitted,
                "completed": total.completed,
                "failed": total.failed,
                "run_ms_p50": percentile(total.runs, 0.5),
                "run_ms_p95": percentile(total.runs, 0.95),
            }
        )
    return {"bucket_s": bucket_s, "buckets": buckets}


def _iso_minute(minute: int) -> str:
    # Not model.ms_to_iso: its small cache is for task timestamps, not 10,080 minutes.
    return datetime.fromtimestamp(minute * BUCKET_S, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
