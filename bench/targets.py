"""The issues' performance targets: what each is measured by, its goal and its test,
and the table rows the report and the command line print."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[float, dict[str, Any]], bool]

# (target, where the value is: a result key or "ratio:<name>", goal, test)
TARGETS_16: tuple[tuple[str, str, str, Check], ...] = (
    (
        "per-call enqueue/s, Client.submit (harness) vs best peer",
        "ratio:serve_enqueue",
        ">= 1x",
        lambda v, r: v >= 1,
    ),
    (
        "per-call enqueue/s, SyncClient.submit (harness) vs best peer",
        "ratio:sync_enqueue",
        ">= 1x",
        lambda v, r: v >= 1,
    ),
    (
        "100 concurrent Client.submit callers, tasks/s",
        "enqueue_concurrent_per_s",
        ">= 20,000",
        lambda v, r: v >= 20_000,
    ),
    (
        "live e2e, one per-call enqueuer, taskd serve vs best peer",
        "ratio:e2e_percall",
        ">= 1.5x",
        lambda v, r: v >= 1.5,
    ),
    (
        "enqueue -> start p50, 5 ms apart, taskd serve vs best peer",
        "ratio:serve_latency_p50",
        "<= 1x",
        lambda v, r: v <= 1,
    ),
    (
        "enqueue -> start p99, 5 ms apart, taskd serve vs best peer",
        "ratio:serve_latency_p99",
        "<= 1x",
        lambda v, r: v <= 1,
    ),
    # {records}: the run's size (1,000,000 at full size, 100,000 with --quick).
    (
        "loop lag p99 (ms, bucket bound), 8 x {records}-record data tasks",
        "responsive_loop_lag_p99_ms_bound",
        "<= 50",
        lambda v, r: v <= 50,
    ),
    (
        "GET stats/overview p99 (ms), 8 x {records}-record data tasks",
        "responsive_stats_p99_ms",
        "<= 100",
        lambda v, r: v <= 100,
    ),
    (
        "email submit -> completed (s), 8 x {records}-record data tasks",
        "responsive_email_s",
        "< 1",
        lambda v, r: v < 1,
    ),
)

TARGETS: tuple[tuple[str, str, str, Check], ...] = (
    ("e2e no-op tasks/s vs best peer", "ratio:e2e", ">= 2x", lambda v, r: v >= 2),
    ("10 ms tasks/s vs best peer", "ratio:io10", ">= 2x", lambda v, r: v >= 2),
    (
        "100 ms tasks, 200 workers: fraction of ideal",
        "io_efficiency",
        ">= 0.9",
        lambda v, r: v >= 0.9,
    ),
    (
        "batch enqueue tasks/s (submit_many)",
        "enqueue_batch_per_s",
        ">= 50,000",
        lambda v, r: v >= 50_000,
    ),
    ("batch enqueue vs best peer enqueue", "ratio:enqueue_batch", ">= 3x", lambda v, r: v >= 3),
    ("REST POST /api/tasks/ req/s (keep-alive)", "rest_per_s", ">= 3,000", lambda v, r: v >= 3000),
    (
        "REST POST /api/tasks/batch tasks/s",
        "rest_batch_per_s",
        ">= 50,000",
        lambda v, r: v >= 50_000,
    ),
    ("submit -> start p50 vs best peer", "ratio:latency_p50", "<= 1x", lambda v, r: v <= 1),
    ("submit -> start p99 vs best peer", "ratio:latency_p99", "<= 1x", lambda v, r: v <= 1),
    (
        "priority-10 wait p99 (ms)",
        "priority_p99_ms",
        "<= task + prefetch window",
        lambda v, r: v <= r.get("priority_bound_ms", 0),
    ),
    ("daemon RSS under e2e load (MB)", "rss_mb", "<= 100", lambda v, r: v <= 100),
    (
        "Redis bytes per retained finished task",
        "redis_bytes_per_task",
        "<= 1,024",
        lambda v, r: v <= 1024,
    ),
    (
        "WebSocket lag p99 (ms), 500 clients, 2,000 tasks/s",
        "ws_lag_p99_ms",
        "<= 250",
        lambda v, r: v <= 250,
    ),
)


def targets(
    result: dict[str, Any], table: tuple[tuple[str, str, str, Check], ...] = TARGETS
) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, goal, met) for each of an issue's targets."""
    rows: list[tuple[str, str, str, bool | None]] = []
    for name, source, goal, check in table:
        if source.startswith("ratio:"):
            found = result.get("ratios", {}).get(source.removeprefix("ratio:"))
            value = found["ratio"] if found else None
            shown = fmt_x(value)
        else:
            value = result.get(source)
            shown = fmt_n(value)
        label = name.replace("{records}", fmt_n(result.get("responsive_records")))
        rows.append((label, shown, goal, None if value is None else check(value, result)))
    return rows


def fmt_x(v: float | None) -> str:
    """A ratio cell."""
    return "-" if v is None else f"{v:.2f}x"


def fmt_n(v: float | None) -> str:
    """A number cell: thousands separated, small values to three digits."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def fmt_met(ok: bool | None) -> str:
    """A target's verdict cell."""
    return {True: "yes", False: "**no**", None: "-"}[ok]
