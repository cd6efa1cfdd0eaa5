"""How the ``taskd`` CLI shows the API's JSON in a terminal: tables, details, event lines.

Pure functions from the API's dicts to text, so the CLI's output can be tested without a
server and the HTTP client knows nothing about terminals. Times are shown in UTC, as the
API sends them, so what a user reads matches logs and ``--json`` output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from taskd.model import STATUS_NAMES

UNFINISHED: Final = ("pending", "scheduled", "retrying", "reserved", "processing", "waiting")
MAX_CELL: Final = 40


# What a terminal may act on rather than show: C0 and C1 controls (ESC starts sequences
# that move the cursor, retitle the window, or write to the clipboard; 0x9b is CSI on
# its own), DEL, and the bidi overrides/isolates and separators that reorder or break
# what a line seems to say. Task names and errors come from whoever submitted the task.
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str, keep: str = "") -> str:
    """``text`` with every character a terminal would act on shown as an escape
    (``\x1b``, ``\u202e``), except those in ``keep``."""
    return _UNSAFE.sub(lambda m: m[0] if m[0] in keep else _escape(m[0]), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_safe(text: str) -> str:
    # orjson escapes C0 itself; the rest can only sit inside strings, where \uXXXX is
    # the same JSON value, so jq and friends read exactly what the API sent.
    return _UNSAFE.sub(lambda m: m[0] if m[0] in "\n" else f"\\u{ord(m[0]):04x}", text)


def json_text(data: Any) -> str:
    """The API's JSON, indented (``--json`` output; jq reads it as well as compact JSON)."""
    return _json_safe(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def json_line(data: Any) -> str:
    """One compact JSON line (``taskd watch --json`` prints one message per line)."""
    return _json_safe(orjson.dumps(data).decode())


def when(iso: Any) -> str:
    """``2024-05-01T12:00:01.234Z`` as ``2024-05-01 12:00:01``; ``-`` when absent."""
    if not isinstance(iso, str) or not iso:
        return "-"
    return iso.replace("T", " ")[:19]


def _cell(value: Any) -> str:
    text = "-" if value is None else str(value)
    text = printable(" ".join(text.split()))  # one line per row, whatever the value held
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] = ()) -> str:
    """Aligned columns; ``right`` holds the indexes of numeric (right-aligned) columns."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    aligned = set(right)

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if i in aligned else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def task_table(page: Mapping[str, Any]) -> str:
    """A page of ``GET /api/tasks``, newest first."""
    tasks = page.get("tasks") or []
    if not tasks:
        return "no tasks"
    rows = [
        (
            t["id"],
            t["status"],
            t["priority"],
            t["task_type"],
            t["queue"],
            f"{t.get('progress', 0)}%",
            when(t.get("created_at")),
            t.get("name"),
        )
        for t in tasks
    ]
    headers = ("ID", "STATUS", "PRI", "TYPE", "QUEUE", "PROG", "CREATED (UTC)", "NAME")
    text = table(headers, rows, right=(2, 5))
    if page.get("next_cursor"):
        text += f"\n(more: --cursor {page['next_cursor']})"
    return text


def task_line(task: Mapping[str, Any]) -> str:
    """One task in one line: what submit, cancel and retry print."""
    return printable(
        f"{task['id']}  {task['status']}  {task['task_type']}  "
        f"queue={task['queue']} priority={task['priority']}"
    )


def _json_block(value: Any) -> str:
    return json_text(value).replace("\n", "\n" + " " * 13)


def task_detail(task: Mapping[str, Any]) -> str:
    """Every field of one task, payload and result as indented JSON."""
    progress = f"{task.get('progress', 0)}%"
    if task.get("progress_message"):
        progress += f"  {task['progress_message']}"
    attempts = f"{task.get('attempt', 0)} (retries {task.get('retry_count', 0)}"
    attempts += f" of {task.get('max_retries', 0)})"
    fields: list[tuple[str, Any]] = [
        ("id", task["id"]),
        ("name", task.get("name")),
        ("type", task["task_type"]),
        ("queue", task["queue"]),
        ("priority", task["priority"]),
        ("status", task["status"] + (" (cancel requested)" * bool(task.get("cancel_requested")))),
        ("progress", progress),
        ("attempts", attempts),
        ("worker", task.get("worker")),
        ("created", when(task.get("created_at"))),
        ("run at", when(task.get("run_at"))),
        ("started", when(task.get("started_at"))),
        ("finished", when(task.get("completed_at"))),
        ("timeout", f"{task.get('timeout_s', 0):g} s"),
        ("unique key", task.get("unique_key")),
        ("error", task.get("error")),
        ("payload", _json_block(task.get("payload"))),
        ("result", _json_block(task.get("result"))),
    ]
    blocks = {"payload", "result"}  # already safe JSON, its line breaks intended
    return "\n".join(
        f"{k:<12} {'-' if v is None else v if k in blocks else printable(str(v))}"
        for k, v in fields
    )


def stats_view(stats: Mapping[str, Any]) -> str:
    """The overview: counts per status, throughput and ready depth per priority."""
    rows = [(s, stats.get(s, 0)) for s in (*STATUS_NAMES, "total")]
    text = table(("STATUS", "TASKS"), rows, right=(1,))
    rates = stats.get("throughput") or {}
    text += (
        f"\n\nthroughput   {rates.get('completed_per_s', 0):g} completed/s, "
        f"{rates.get('failed_per_s', 0):g} failed/s (over {rates.get('window_s', 0):g} s)"
    )
    depth = {p: n for p, n in (stats.get("depth_by_priority") or {}).items() if n}
    ready = ", ".join(f"p{p}: {n}" for p, n in sorted(depth.items(), key=lambda i: -int(i[0])))
    return text + f"\nready depth  {ready or 'empty'}"


def left(queue: Mapping[str, Any]) -> int:
    """Tasks of a queue that are not finished yet (what ``drain`` waits for)."""
    counts = queue.get("counts") or {}
    return sum(int(counts.get(s, 0)) for s in UNFINISHED)


def queue_table(body: Mapping[str, Any]) -> str:
    """``GET /api/queues`` as one row per queue."""
    queues = body.get("queues") or []
    if not queues:
        return "no queues"
    statuses = ("pending", "scheduled", "processing", "retrying", "completed", "failed")
    rows = []
    for q in queues:
        counts, rates = q.get("counts") or {}, q.get("throughput") or {}
        rows.append(
            (
                q["name"],
                "paused" if q.get("paused") else "running",
                *(counts.get(s, 0) for s in statuses),
                counts.get("cancelled", 0),
                counts.get("total", 0),
                q.get("workers", 0),
                f"{rates.get('completed_per_s', 0):g}",
                f"{rates.get('failed_per_s', 0):g}",
            )
        )
    headers = (
        "QUEUE",
        "STATE",
        "PENDING",
        "SCHEDULED",
        "RUNNING",
        "RETRYING",
        "DONE",
        "FAILED",
        "CANCELLED",
        "TOTAL",
        "WORKERS",
        "DONE/S",
        "FAILED/S",
    )
    return table(headers, rows, right=range(2, len(headers)))


def queue_line(queue: Mapping[str, Any]) -> str:
    """One queue in one line: what pause, resume and drain print."""
    counts = queue.get("counts") or {}
    waiting = ", ".join(f"{counts.get(s, 0)} {s}" for s in UNFINISHED)
    state = "paused" if queue.get("paused") else "running"
    return printable(f"queue {queue['name']} is {state}: {waiting}")


def event_line(event: Mapping[str, Any]) -> str:
    """One event of ``taskd watch``: time, queue, kind, task and its latest detail."""
    task = event.get("task") or {}
    detail = task.get("error") if event.get("kind") in ("failed", "retrying") else None
    detail = detail or task.get("progress_message") or ""
    parts = (
        str(event.get("ts") or "")[11:23].ljust(12),  # time of day with milliseconds
        f"{event.get('queue', ''):<12}",
        f"{event.get('kind', ''):<16}",
        str(task.get("id", "")),
        f"{task.get('task_type', ''):<18}",
        f"{task.get('status', ''):<10}",
        f"{task.get('progress', 0):>3}%",
        " ".join(str(detail).split())[:80],
    )
    return printable(" ".join(parts).rstrip())


def snapshot_line(message: Mapping[str, Any], url: str) -> str:
    """The header ``taskd watch`` prints once connected (and after a resync)."""
    stats = message.get("stats") or {}
    counts = ", ".join(f"{stats.get(s, 0)} {s}" for s in UNFINISHED)
    return printable(f"watching {url}: {stats.get('total', 0)} tasks ({counts}); Ctrl-C to stop")


def matches(event: Mapping[str, Any], queue: str | None, task_type: str | None) -> bool:
    """Whether an event passes ``taskd watch``'s ``--queue`` and ``--type`` filters."""
    task = event.get("task") or {}
    return (queue is None or event.get("queue") == queue) and (
        task_type is None or task.get("task_type") == task_type
    )


def drain_problems(queue: Mapping[str, Any]) -> list[str]:
    """Why a drain may never end: the queue is paused, or no running daemon serves it."""
    name = queue.get("name", "?")
    problems = []
    if queue.get("paused"):
        problems.append(f"queue {name} is paused: it drains once resumed (taskd resume {name})")
    if not queue.get("workers"):
        problems.append(f"no running daemon serves queue {name} (taskd serve --queues {name})")
    return problems
