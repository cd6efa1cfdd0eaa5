"""What a run reports beyond raw numbers: the machine, versions, ratios to the best peer,
the issue's targets, and the markdown table for RESULTS.md."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.targets import TARGETS_16, fmt_met, fmt_n, targets

NOT_PEERS = {"taskd-serve", "taskd-sync"}  # taskd itself, through the peer harness


def machine() -> dict[str, Any]:
    """nproc, CPU model, memory, kernel, and how busy the machine was."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def versions(redis_server: str) -> dict[str, str]:
    """Versions of everything on taskd's side of the run."""
    found = {"python": platform.python_version(), "redis_server": redis_server}
    for dist in ("taskd", "redis", "hiredis", "aiohttp", "orjson", "uvloop"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def _ran(peers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        n: p
        for n, p in peers.items()
        if n not in NOT_PEERS and "error" not in p and "skipped" not in p
    }


def _best(
    peers: dict[str, dict[str, Any]],
    value: Callable[[dict[str, Any]], float | None],
    pick: Callable[..., Any],
) -> tuple[str, float] | None:
    scored = [(v, n) for n, p in peers.items() if (v := value(p)) is not None]
    if not scored:
        return None
    v, n = pick(scored)
    return n, v


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """taskd against the best peer of the same run, per workload."""
    peers = _ran(result.get("peers", {}))
    out: dict[str, Any] = {}

    def against(key: str, mine: float | None, best: tuple[str, float] | None) -> None:
        if best is None or not mine or not best[1]:
            return
        out[key] = {"best_peer": best[0], "peer_value": best[1], "ratio": round(mine / best[1], 2)}

    against("e2e", result.get("e2e_per_s"), _best(peers, lambda p: p.get("e2e_per_s"), max))
    against("io10", result.get("io10_per_s"), _best(peers, lambda p: p.get("io_per_s"), max))
    any_enqueue = _best(
        peers,
        lambda p: max(p.get("enqueue_per_s") or 0, p.get("enqueue_batch_per_s") or 0) or None,
        max,
    )
    against("enqueue_batch", result.get("enqueue_batch_per_s"), any_enqueue)
    against(
        "enqueue_single",
        result.get("enqueue_per_s"),
        _best(peers, lambda p: p.get("enqueue_per_s"), max),
    )
    for q in ("p50", "p99"):
        key = f"latency_{q}_ms"
        against(f"latency_{q}", result.get(key), _best(peers, partial(_get, key), min))
    # Issue 16: the per-call path, taskd through the same harness loop as the peers.
    single = _best(peers, lambda p: p.get("enqueue_per_s"), max)
    against("enqueue_sync", result.get("enqueue_sync_per_s"), single)
    serve = result.get("peers", {}).get("taskd-serve", {})
    sync = result.get("peers", {}).get("taskd-sync", {})
    against("serve_enqueue", serve.get("enqueue_per_s"), single)
    against("sync_enqueue", sync.get("enqueue_per_s"), single)
    live = _best(peers, lambda p: p.get("e2e_percall_per_s"), max)
    against("e2e_percall", serve.get("e2e_percall_per_s"), live)
    for q in ("p50", "p99"):
        key = f"latency_{q}_ms"
        against(f"serve_latency_{q}", serve.get(key), _best(peers, partial(_get, key), min))
    return out


def _get(key: str, peer: dict[str, Any]) -> float | None:
    value: float | None = peer.get(key)
    return value


PEER_COLUMNS = (
    ("e2e tasks/s", "e2e_per_s"),
    ("enqueue/s (single)", "enqueue_per_s"),
    ("enqueue/s (batch)", "enqueue_batch_per_s"),
    ("p50 ms", "latency_p50_ms"),
    ("p99 ms", "latency_p99_ms"),
    ("10 ms tasks/s", "io_per_s"),
)


def markdown(result: dict[str, Any], command: str) -> str:
    """RESULTS.md: the run's tables, machine, versions and date."""
    m, v = result["machine"], result["versions"]
    lines = [
        "# taskd benchmark results",
        "",
        f"Run {result['date']} with `{command}` in {result['elapsed_s']:.0f} s.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB, Linux {m['kernel']}, "
        f"1-minute load {m['loadavg_1m_at_start']} at start and "
        f"{m.get('loadavg_1m_at_end', '?')} at the end (other work shares these cores). "
        f"Redis: {v['redis_server']}, AOF everysec. Python {v['python']}; taskd {v['taskd']}, "
        f"redis-py {v['redis']}, hiredis {v['hiredis']}, uvloop {v['uvloop']}.",
        "",
        *percall_section(result),
        "## Targets (issue 6)",
        "",
        "| target | measured | goal | met |",
        "| --- | --- | --- | --- |",
    ]
    missed = 0
    for name, measured, goal, ok in targets(result):
        lines.append(f"| {name} | {measured} | {goal} | {fmt_met(ok)} |")
        missed += ok is False
    if missed:
        lines += [
            "",
            f"{missed} target(s) missed: [PROFILE.md](PROFILE.md) shows where the time goes "
            "for each (measured with `python -m bench.floor` and `python -m bench.profile`) "
            "and what meeting it would take.",
        ]
    lines += ["", "## taskd against its peers (same Redis, same run)", ""]
    lines += _peer_table(result)
    lines += ["", "e2e tasks/s per round:", ""]
    lines.append(f"- taskd (in-process): {_runs(result.get('e2e_runs'))}")
    for name, p in result.get("peers", {}).items():
        if p.get("e2e_runs"):
            lines.append(f"- {name}: {_runs(p['e2e_runs'])}")
    lines += ["", "## taskd in detail", "", "| metric | value |", "| --- | --- |"]
    for key, value in sorted(result.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            lines.append(f"| {key} | {value} |")
    lines += ["", *NOTES]
    if result.get("errors") or result.get("skipped"):
        lines += ["", "## Workloads that did not run", ""]
        lines += [f"- {k}: {e}" for k, e in result.get("errors", {}).items()]
        lines += [f"- {k} (skipped): {e}" for k, e in result.get("skipped", {}).items()]
    lines += ["", "## How each library was run", ""]
    for name, p in result.get("peers", {}).items():
        state = p.get("setup") or p.get("error") or p.get("skipped")
        extra = f"; batch: {p['batch_api']}" if p.get("batch_api") else ""
        capped = f"; e2e over {p['e2e_tasks']:,} tasks" if p.get("e2e_tasks") else ""
        lines.append(f"- **{name}** {p.get('version', '')}: {state}{extra}{capped}")
    lines += ["", *REPRODUCE]
    return "\n".join(lines) + "\n"


PERCALL_COLUMNS = (
    ("enqueue/s, per call", "enqueue_per_s"),
    ("live e2e/s, one per-call enqueuer", "e2e_percall_per_s"),
    ("enqueue -> start p50 ms", "latency_p50_ms"),
    ("p99 ms", "latency_p99_ms"),
    ("enqueue/s, batch", "enqueue_batch_per_s"),
    ("e2e/s, batch submits", "e2e_per_s"),
)


def percall_section(result: dict[str, Any]) -> list[str]:
    """The headline: one submit per call (issue 16), every library through one harness
    loop, batch figures beside; then its targets and taskd's own per-call figures."""
    lines = [
        "## One task per call (issue 16, the headline)",
        "",
        "Every library through the same harness loop: one enqueue call per task, the",
        "worker in its own process (taskd: `taskd serve`), enqueue -> start with tasks",
        "5 ms apart on an idle worker; batch figures beside.",
        "",
        "| queue | " + " | ".join(c for c, _ in PERCALL_COLUMNS) + " |",
        "|" + " --- |" * (len(PERCALL_COLUMNS) + 1),
    ]
    for name, p in result.get("peers", {}).items():
        if "error" in p or "skipped" in p:
            continue
        label = f"**{name}**" if name in NOT_PEERS else name
        cells = " | ".join(fmt_n(p.get(k)) for _, k in PERCALL_COLUMNS)
        lines.append(f"| {label} {p.get('version', '')} | {cells} |")
    lines += ["", "| target | measured | goal | met |", "| --- | --- | --- | --- |"]
    for name, measured, goal, ok in targets(result, TARGETS_16):
        lines.append(f"| {name} | {measured} | {goal} | {fmt_met(ok)} |")
    mine = (
        ("Client.submit one by one, in-process (tasks/s)", "enqueue_per_s"),
        ("SyncClient.submit one by one, in-process (tasks/s)", "enqueue_sync_per_s"),
        ("PING one by one, async client (the floor under Client.submit)", "ping_async_per_s"),
        ("PING one by one, redis-py blocking (the floor under SyncClient)", "ping_sync_per_s"),
        ("100 concurrent Client.submit callers (tasks/s)", "enqueue_concurrent_per_s"),
        ("REST POST /api/tasks/, one keep-alive client (req/s)", "rest_1conn_per_s"),
        ("REST POST /api/tasks/, `rest_connections` clients (req/s)", "rest_per_s"),
        ("REST POST /api/tasks/batch (tasks/s)", "rest_batch_per_s"),
    )
    lines += ["", "| taskd, per call | value |", "| --- | --- |"]
    lines += [f"| {label} | {fmt_n(result.get(key))} |" for label, key in mine]
    return [*lines, ""]


NOTES = [
    "How to read these numbers:",
    "",
    "- *e2e*: no-op tasks/s from the first submit to the last completion (taskd) or the",
    "  last handler call (peers), W=8 concurrency, one worker process, submitter running",
    "  meanwhile. taskd's headline runs pool + supervisor in-process (configured like",
    "  `taskd serve --workers 8`); *taskd-serve* is the daemon measured exactly like the",
    "  peers (worker subprocess, submitter in another process). *e2e_drain_per_s*: the",
    "  pool alone on a pre-filled queue; *e2e_serve_per_s*: the daemon with the in-process",
    "  client submitting.",
    "- *enqueue*: tasks/s with no worker running, one awaited call at a time (single) or the",
    "  library's bulk API (batch; '-' where it has none). REST runs against a `taskd serve`",
    "  child over keep-alive connections (`rest_connections` of them).",
    "- *p50/p99*: submit -> handler start on an idle worker, 500 tasks 5 ms apart, from",
    "  before the submit call to the handler's first line.",
    "- *10 ms tasks/s*: 2,000 tasks awaiting (or sleeping) 10 ms, concurrency 100.",
    "- *chord_overhead*: the cost of a workflow. `chord_tasks` no-op tasks are submitted",
    "  plain, then as one chord of that many members plus a callback (`submit_workflow`),",
    "  on the same in-process pool, each timed from the submit to the last completion; the",
    "  chord's time per task over the plain tasks' (1.0 = free). *chord_plain_per_s* and",
    "  *chord_per_s* are their tasks/s, *chord_\\*_redis_cpu_us_per_task* Redis's CPU per task.",
    "- *responsive_\\**: eight `data_processing` tasks of `responsive_records` generated",
    "  records each crunch in a `taskd serve` child (10 workers) while one keep-alive client",
    "  times `GET /api/tasks/stats/overview` every 20 ms and, once all eight report",
    "  progress, an `email` task (outbox) is timed from submit to completed. The loop lag",
    "  is the daemon's own `taskd_event_loop_lag_sampled_seconds` histogram (a sample",
    "  each 250 ms) over the run: its p99 is the smallest bucket bound holding 99 %.",
    "- *redis_cpu_us_per_task*: the Redis server's CPU time per e2e task (INFO cpu);",
    "  *redis_bound_per_s* is one full Redis core at that cost, and",
    "  *e2e_fraction_of_redis_bound* how much of it the e2e run used.",
    "- The 2 cores are shared by the submitter, the worker, Redis and whatever else runs",
    "  on the machine (see the load averages). With `--repeat N`, taskd's comparison",
    "  workloads and every peer run in N interleaved rounds and the tables show medians;",
    "  drain, io100, priority, memory, daemon, REST and WebSocket run once.",
]

REPRODUCE = [
    "## Reproduce",
    "",
    "```sh",
    "python3 -m venv .bench-venv   # peers live apart from taskd's own environment",
    ".bench-venv/bin/pip install -r bench/requirements.txt -e .",
    "python -m bench --markdown bench/RESULTS.md          # or: taskd bench ...",
    "python -m bench --only taskd --quick --json          # taskd alone, about a minute",
    "py-spy record -o e2e.svg -- python -m bench.profile e2e   # one workload, profiled",
    "python -m bench.floor                               # round-trip and AOF floors",
    "```",
]


def _peer_table(result: dict[str, Any]) -> list[str]:
    head = "| queue | " + " | ".join(c for c, _ in PEER_COLUMNS) + " |"
    rows = [head, "|" + " --- |" * (len(PEER_COLUMNS) + 1)]
    mine = {k: result.get(k) for _, k in PEER_COLUMNS} | {"io_per_s": result.get("io10_per_s")}
    rows.append(
        "| **taskd (in-process pool)** | "
        + " | ".join(fmt_n(mine[k]) for _, k in PEER_COLUMNS)
        + " |"
    )
    for name, p in result.get("peers", {}).items():
        if "error" in p or "skipped" in p:
            rows.append(f"| {name} | " + " | ".join("-" for _ in PEER_COLUMNS) + " |")
            continue
        rows.append(
            f"| {name} {p.get('version', '')} | "
            + " | ".join(fmt_n(p.get(k)) for _, k in PEER_COLUMNS)
            + " |"
        )
    return rows


def _runs(values: list[float | None] | None) -> str:
    return ", ".join(fmt_n(v) for v in values or [])


def command_line() -> str:
    """How this run was invoked, for the report."""
    return " ".join(["python -m bench", *sys.argv[1:]])
