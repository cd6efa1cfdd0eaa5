"""The ``report_generation`` task: a report of the queue itself, or of given records.

With no ``records`` it reports on the tasks created in the last ``period_s`` seconds
(by status and type, duration percentiles, failure reasons, throughput over time).
With ``records`` it summarises them (per-column statistics and a bar chart). Either
way the report is stored as HTML, CSV and JSON artifacts of the task, downloadable
through ``GET /api/tasks/{id}/artifacts/{name}``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Final

from taskd.config import Settings
from taskd.engine.context import Context
from taskd.engine.payload_schema import known_keys
from taskd.engine.registry import task
from taskd.errors import Fail, ValidationError
from taskd.handlers.artifacts import write_artifact
from taskd.handlers.records import cell, tidy, to_number
from taskd.handlers.report_render import (
    Chart,
    Report,
    Table,
    render_csv,
    render_html,
    render_json,
)
from taskd.model import QUEUE_NAME, Task, ms_to_iso
from taskd.store import Store

FORMATS: Final = {"html": render_html, "csv": render_csv, "json": render_json}
DEFAULT_PERIOD_S = 86_400.0
MAX_PERIOD_S = 366 * 86_400.0
DEFAULT_MAX_TASKS = 10_000
MAX_TASKS = 100_000
PAGE = 500
BUCKETS = 24
TOP_FAILURES = 10
MAX_COLUMNS = 100
CSV_COLUMNS: Final = (
    "id",
    "task_type",
    "queue",
    "status",
    "created_at",
    "duration_ms",
    "retries",
    "error",
)
TYPE_COLUMNS: Final = ("type", "total", "completed", "failed", "p50", "p95", "p99")
EXAMPLE: Final = {"period_s": 3600, "title": "Last hour"}
SCHEMA: Final = known_keys(
    {
        "title": "At most 200 characters.",
        "queue": "Report on this queue only [all queues].",
        "period_s": f"Tasks created in the last S seconds [{DEFAULT_PERIOD_S:g}].",
        "max_tasks": f"At most this many tasks [{DEFAULT_MAX_TASKS}].",
        "formats": "Any of html, csv, json [all three].",
        "records": "Report on these objects instead of the queue.",
        "chart": 'With records: {"label": field, "value": field}.',
    }
)


def validate(payload: dict[str, Any]) -> None:
    """Submit-time checks of the report options."""
    period = payload.get("period_s", DEFAULT_PERIOD_S)
    if (
        isinstance(period, bool)
        or not isinstance(period, int | float)
        or not 0 < period <= MAX_PERIOD_S
    ):
        raise ValidationError("payload.period_s", "must be a number of seconds, at most a year")
    if not isinstance(payload.get("title", ""), str) or len(payload.get("title", "")) > 200:
        raise ValidationError("payload.title", "must be a string of at most 200 characters")
    queue = payload.get("queue")
    if queue is not None and (not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue)):
        raise ValidationError("payload.queue", "must be a queue name")
    formats = payload.get("formats", list(FORMATS))
    if not isinstance(formats, list) or not formats or set(formats) - set(FORMATS):
        raise ValidationError("payload.formats", "must be a list of html, csv, json")
    limit = payload.get("max_tasks", DEFAULT_MAX_TASKS)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_TASKS:
        raise ValidationError("payload.max_tasks", f"must be an integer from 1 to {MAX_TASKS}")
    records = payload.get("records")
    if records is not None:
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValidationError("payload.records", "must be a list of objects")
        chart = payload.get("chart", {})
        if (
            not isinstance(chart, dict)
            or set(chart) - {"label", "value"}
            or not all(isinstance(v, str) for v in chart.values())
        ):
            raise ValidationError("payload.chart", 'must be {"label": field, "value": field}')


@task("report_generation", example=EXAMPLE, schema=SCHEMA, validate=validate)
async def report_generation(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Build a report (HTML with a chart, CSV, JSON) of the queue or of given records.

    The files are stored as the task's artifacts and listed in ``result.artifacts``.
    """
    try:
        validate(payload)
    except ValidationError as exc:
        raise Fail(str(exc)) from None
    await ctx.progress(5, "collecting")
    if "records" in payload:
        report = await asyncio.to_thread(records_report, payload)
    else:
        if ctx.store is None:
            raise Fail("a queue report needs the store (run it in a worker pool)")
        tasks, truncated = await collect(ctx.store, payload)
        await ctx.progress(60, f"summarising {len(tasks)} tasks")
        counts = await ctx.store.stats(payload.get("queue"))
        report = await asyncio.to_thread(queue_report, payload, tasks, counts, truncated)
    await ctx.progress(80, "rendering")
    formats = payload.get("formats", list(FORMATS))
    artifacts = await asyncio.to_thread(save, ctx.settings, ctx.task_id, report, formats)
    await ctx.progress(100, "report ready")
    return {
        "kind": report.data["kind"],
        "title": report.title,
        "summary": report.facts,
        "artifacts": artifacts,
    }


def save(
    settings: Settings | None, task_id: str, report: Report, formats: list[str]
) -> list[dict[str, Any]]:
    """Render the report in each format and store it as ``report.<format>``."""
    return [
        write_artifact(settings, task_id, f"report.{name}", FORMATS[name](report))
        for name in dict.fromkeys(formats)
    ]


@dataclass(frozen=True, slots=True)
class Row:
    """What a queue report needs of one task (tasks themselves may carry big payloads)."""

    id: str
    task_type: str
    queue: str
    status: str
    created_at: int
    duration_ms: int | None
    finished_at: int | None
    retries: int
    error: str

    @classmethod
    def of(cls, t: Task) -> Row:
        """Project a task."""
        duration = None
        if t.started_at and t.completed_at and str(t.status) == "completed":
            duration = max(0, t.completed_at - t.started_at)
        error = (t.error or "").strip().split("\n", 1)[0][:200]
        return cls(
            t.id,
            t.task_type,
            t.queue,
            str(t.status),
            t.created_at,
            duration,
            t.completed_at,
            t.retry_count,
            error,
        )


async def collect(store: Store, payload: dict[str, Any]) -> tuple[list[Row], bool]:
    """Tasks created within the period, newest first; True when max_tasks cut them."""
    cutoff = time.time() * 1000 - payload.get("period_s", DEFAULT_PERIOD_S) * 1000
    limit = payload.get("max_tasks", DEFAULT_MAX_TASKS)
    rows: list[Row] = []
    cursor = None
    while True:
        page, cursor = await store.list_tasks(limit=PAGE, cursor=cursor, queue=payload.get("queue"))
        for t in page:
            if t.created_at < cutoff:
                return rows, False
            if len(rows) >= limit:
                return rows, True
            rows.append(Row.of(t))
        if cursor is None:
            return rows, False


def percentile(sorted_values: list[int], q: float) -> float | None:
    """Linear-interpolated percentile ``q`` (0-100) of sorted values, rounded for people
    like every computed number of a report (the interpolation adds binary noise)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    value = sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)
    return tidy(float(value))


def _durations(rows: list[Row]) -> dict[str, float | None]:
    values = sorted(r.duration_ms for r in rows if r.duration_ms is not None)
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": float(values[-1]) if values else None,
    }


def summarise(rows: list[Row], chart: Chart) -> dict[str, Any]:
    """The queue report's numbers: by status and type, durations, failures, throughput."""
    by_type: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_type[r.task_type].append(r)
    failures = Counter(r.error for r in rows if r.status == "failed" and r.error)
    return {
        "by_status": dict(Counter(r.status for r in rows)),
        "by_type": {
            name: {"total": len(items), **Counter(r.status for r in items), **_durations(items)}
            for name, items in sorted(by_type.items())
        },
        "durations_ms": _durations(rows),
        "failures": [{"error": e, "count": n} for e, n in failures.most_common(TOP_FAILURES)],
        "throughput": [
            {"start": label, "completed": int(v[0]), "failed": int(v[1])}
            for label, v in zip(chart.labels, chart.values, strict=True)
        ],
    }


def queue_report(
    payload: dict[str, Any], rows: list[Row], counts: dict[str, int], truncated: bool
) -> Report:
    """The queue report: summary numbers, a throughput chart, tables, one CSV row per task."""
    period_s = float(payload.get("period_s", DEFAULT_PERIOD_S))
    now_ms = int(time.time() * 1000)
    chart = _throughput(rows, now_ms, period_s)
    summary = summarise(rows, chart)
    by_status, durations = summary["by_status"], summary["durations_ms"]
    facts = {
        "tasks": len(rows),
        "completed": by_status.get("completed", 0),
        "failed": by_status.get("failed", 0),
        "p50_ms": durations["p50"],
        "p95_ms": durations["p95"],
        "p99_ms": durations["p99"],
        "completed_per_minute": round(by_status.get("completed", 0) / (period_s / 60), 2),
    }
    data = {
        "kind": "queue",
        "queue": payload.get("queue"),
        "period_s": period_s,
        "generated_at": ms_to_iso(now_ms),
        "truncated": truncated,
        "counters": counts,
        **summary,
    }
    where = f"queue {payload['queue']}" if payload.get("queue") else "all queues"
    subtitle = (
        f"{where}, tasks created in the last {period_s / 3600:g} h, generated "
        f"{data['generated_at']}" + (" (cut at max_tasks)" if truncated else "")
    )
    return Report(
        payload.get("title") or "taskd queue report",
        subtitle,
        facts,
        data,
        list(CSV_COLUMNS),
        [_csv_row(r) for r in rows],
        _queue_tables(summary),
        chart,
    )


def _csv_row(r: Row) -> list[Any]:
    created = ms_to_iso(r.created_at)
    return [r.id, r.task_type, r.queue, r.status, created, r.duration_ms, r.retries, r.error]


def _queue_tables(summary: dict[str, Any]) -> list[Table]:
    numbers = ("total", "completed", "failed")
    types = [
        [name, *(info.get(c, 0) if c in numbers else info[c] for c in TYPE_COLUMNS[1:])]
        for name, info in summary["by_type"].items()
    ]
    return [
        Table(
            "By status",
            ["status", "tasks"],
            [list(i) for i in sorted(summary["by_status"].items())],
        ),
        Table("By type (durations in ms)", list(TYPE_COLUMNS), types),
        Table(
            "Failure reasons",
            ["error", "count"],
            [[f["error"], f["count"]] for f in summary["failures"]],
        ),
    ]


def _throughput(rows: list[Row], now_ms: int, period_s: float) -> Chart:
    """Completed and failed tasks per time bucket over the period."""
    width = period_s * 1000 / BUCKETS
    start = now_ms - period_s * 1000
    values = [[0.0, 0.0] for _ in range(BUCKETS)]
    for r in rows:
        if r.finished_at is None or r.status not in ("completed", "failed"):
            continue
        index = min(BUCKETS - 1, max(0, int((r.finished_at - start) // width)))
        values[index][0 if r.status == "completed" else 1] += 1
    labels = [(ms_to_iso(int(start + i * width)) or "")[11:16] for i in range(BUCKETS)]
    return Chart("Finished tasks over time (UTC)", ["completed", "failed"], labels, values)


def records_report(payload: dict[str, Any]) -> Report:
    """Summarise given records: per-column statistics, a bar chart, the rows themselves."""
    records: list[dict[str, Any]] = payload["records"]
    columns = list(dict.fromkeys(k for r in records for k in r))[:MAX_COLUMNS]
    summary = {c: _column_summary([r.get(c) for r in records]) for c in columns}
    numeric = [c for c in columns if "mean" in summary[c]]
    text = [c for c in columns if c not in numeric]
    options = payload.get("chart", {})
    label = options.get("label") or (text[0] if text else None)
    value = options.get("value") or (numeric[0] if numeric else None)
    chart = _records_chart(records, label, value) if label else None
    title = payload.get("title") or "Records report"
    facts: dict[str, Any] = {"records": len(records), "columns": len(columns)}
    for c in numeric[:3]:
        facts[f"sum_{_snake(c)}"] = summary[c]["sum"]
    data = {
        "kind": "records",
        "generated_at": ms_to_iso(int(time.time() * 1000)),
        "records": len(records),
        "columns": summary,
        "chart": None
        if chart is None
        else dict(zip(chart.labels, (v[0] for v in chart.values), strict=True)),
    }
    stats = [
        [c, s["count"], s.get("distinct"), s.get("min"), s.get("max"), s.get("mean")]
        for c, s in summary.items()
    ]
    rows = [[r.get(c) for c in columns] for r in records]
    tables = [
        Table("Columns", ["column", "values", "distinct", "min", "max", "mean"], stats),
        Table("Records", columns, rows),
    ]
    subtitle = f"{len(records):,} records, generated {data['generated_at']}"
    return Report(title, subtitle, facts, data, columns, rows, tables, chart)


def _snake(name: str) -> str:
    """A column name as part of a snake_case key ("Unit Price" -> "unit_price")."""
    return "_".join(re.findall(r"[0-9a-z]+", name.lower())) or "column"


def _column_summary(values: list[Any]) -> dict[str, Any]:
    present = [v for v in values if v is not None and v != ""]
    numbers = [n for n in (to_number(v) for v in present) if n is not None]
    if present and len(numbers) == len(present):
        return {
            "count": len(present),
            "min": min(numbers),
            "max": max(numbers),
            "sum": tidy(sum(numbers)),
            "mean": tidy(sum(numbers) / len(numbers)),
        }
    distinct = Counter(cell(v) for v in present)
    return {
        "count": len(present),
        "distinct": len(distinct),
        "top": [v for v, _ in distinct.most_common(5)],
    }


def _records_chart(records: list[dict[str, Any]], label: str, value: str | None) -> Chart:
    """Sum of ``value`` (or the count) per ``label``, the 30 largest bars."""
    totals: dict[str, float] = defaultdict(float)
    for r in records:
        number = to_number(r.get(value)) if value else 1
        totals[cell(r.get(label))] += number or 0
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:30]
    series = f"sum of {value}" if value else "records"
    return Chart(f"{series} by {label}", [series], [k for k, _ in top], [[v] for _, v in top])
