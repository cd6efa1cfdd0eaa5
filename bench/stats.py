"""Small statistics: percentiles of latency samples and medians of repeated runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation, as numpy's default does."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of delays given in seconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
    }


def median(values: Sequence[float]) -> float:
    """Median of repeated measurements (other engineers share the 2 cores: medians, not means)."""
    return float(statistics.median(values))


def rate(count: int, seconds: float) -> float:
    """Items per second, rounded for reports."""
    return round(count / seconds, 1) if seconds > 0 else 0.0
