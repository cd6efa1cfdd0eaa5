"""The whole run: taskd's workloads in order, then every peer, each step timed and guarded.

A workload that fails is recorded under ``errors`` and leaves its keys null; the rest of
the run goes on, so one broken peer or a missing endpoint never costs the whole report.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from bench import daemon, engine, percall, responsive, ws
from bench.daemon import Skipped
from bench.peers import MODULES
from bench.plan import Plan
from bench.procs import REPO, child_env
from bench.server import flush
from bench.stats import median

T = TypeVar("T")


class Steps:
    """Runs named steps, reporting progress on stderr and collecting failures."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.errors: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def say(self, text: str) -> None:
        """One progress line (stderr: stdout carries the JSON)."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    async def run(self, name: str, make: Callable[[], Awaitable[T]]) -> T | None:
        """Run one step; None (and an entry in ``errors``) when it fails."""
        began = time.monotonic()
        try:
            value = await make()
        except Skipped as exc:
            self.skipped[name] = str(exc)
            self.say(f"{name}: skipped ({exc})")
            return None
        except Exception as exc:  # a failing workload must not end the run
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            self.say(f"{name}: FAILED {self.errors[name]}")
            return None
        self.seconds[name] = self.seconds.get(name, 0) + round(time.monotonic() - began, 1)
        self.say(f"{name}: {value}")
        return value


async def core(url: str, plan: Plan, steps: Steps) -> dict[str, Any]:
    """taskd's side of the peer comparison (one round): e2e, enqueue, latency, io10."""
    out: dict[str, Any] = {}
    w = plan.workers
    e2e = await steps.run("e2e", lambda: engine.e2e(url, plan.tasks, w))
    if e2e:
        us = out["redis_cpu_us_per_task"] = e2e["redis_cpu_us_per_task"]
        out["e2e_per_s"] = e2e["per_s"]
        if us > 0:  # one Redis core's worth of tasks at this cost: the engine's ceiling
            out["redis_bound_per_s"] = round(1e6 / us)
            out["e2e_fraction_of_redis_bound"] = round(e2e["per_s"] * us / 1e6, 3)
    single = await steps.run("enqueue", lambda: engine.enqueue(url, plan.single_tasks, batch=False))
    batch = await steps.run("enqueue_batch", lambda: engine.enqueue(url, plan.tasks, batch=True))
    for key, found in (("enqueue", single), ("enqueue_batch", batch)):
        if found:
            out[f"{key}_per_s"] = found["per_s"]
            out[f"{key}_redis_cpu_us_per_task"] = found["redis_cpu_us_per_task"]
    out |= await _percall(url, plan, steps)
    lat = await steps.run("latency", lambda: engine.latency(url, plan.latency_tasks, w))
    out |= {f"latency_{k}": v for k, v in (lat or {}).items()}
    io10 = await steps.run(
        "io10", lambda: engine.io(url, plan.io_tasks, plan.io_workers, plan.io_sleep_s)
    )
    if io10:
        out |= {"io10_per_s": io10["per_s"], "io10_efficiency": io10["efficiency"]}
    return out


async def extras(url: str, plan: Plan, work_dir: Path, steps: Steps) -> dict[str, Any]:
    """taskd's workloads without a peer counterpart: run once, after the rounds."""
    out: dict[str, Any] = {}
    w = plan.workers
    out["e2e_drain_per_s"] = await steps.run("drain", lambda: engine.drain(url, plan.tasks, w))
    io100 = await steps.run(
        "io100", lambda: engine.io(url, plan.io_tasks, plan.io100_workers, plan.io100_sleep_s)
    )
    out["io_efficiency"] = io100 and io100["efficiency"]
    prio = await steps.run("priority", lambda: engine.priority(url, plan.priority_probes, w))
    out |= {f"priority_{k}": v for k, v in (prio or {}).items()}
    out["redis_bytes_per_task"] = await steps.run(
        "memory", lambda: engine.redis_bytes_per_task(url, plan.memory_tasks, w)
    )
    chord = await steps.run("chord", lambda: engine.chord(url, plan.chord_tasks, w))
    out |= {f"chord_{k}": v for k, v in (chord or {}).items()} | {"chord_tasks": plan.chord_tasks}
    out |= await _daemon_suite(url, plan, work_dir, steps)
    return out


async def _percall(url: str, plan: Plan, steps: Steps) -> dict[str, Any]:
    """Issue 16's taskd-only per-call figures: the blocking client, 100 concurrent callers,
    and the PING floors of both clients."""
    out: dict[str, Any] = {}
    n = plan.single_tasks
    sync = await steps.run("enqueue_sync", lambda: percall.enqueue_sync(url, n))
    if sync:
        out |= {"enqueue_sync_per_s": sync["per_s"], "ping_sync_per_s": sync["ping_per_s"]}
    out["ping_async_per_s"] = await steps.run("ping_async", lambda: percall.ping_async(url, n))
    many = await steps.run(
        "enqueue_concurrent", lambda: percall.enqueue_concurrent(url, plan.tasks)
    )
    if many:
        out["enqueue_concurrent_per_s"] = many["per_s"]
        out["enqueue_concurrent_redis_cpu_us_per_task"] = many["redis_cpu_us_per_task"]
    return out


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several rounds: numbers become medians, peers merge by name, and
    ``e2e_runs`` keeps each round's e2e. A peer that failed in some rounds keeps the rest."""
    ok = [r for r in rounds if "error" not in r and "skipped" not in r] or rounds[-1:]
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for r in ok for k in r):
        values = [r[key] for r in ok if r.get(key) is not None]
        if key == "peers":
            names = dict.fromkeys(n for r in ok for n in r["peers"])
            out[key] = {n: merge([r["peers"][n] for r in ok if n in r["peers"]]) for n in names}
        elif values and all(_is_number(v) for v in values):
            middle = median(values)
            out[key] = int(middle) if all(isinstance(v, int) for v in values) else round(middle, 3)
        else:
            out[key] = values[-1] if values else None
    out["e2e_runs"] = [r.get("e2e_per_s") for r in ok]
    if len(ok) < len(rounds):
        out["failed_rounds"] = len(rounds) - len(ok)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def _daemon_suite(url: str, plan: Plan, work_dir: Path, steps: Steps) -> dict[str, Any]:
    """Workloads against ``taskd serve`` children: RSS and e2e, REST, WebSocket fan-out."""
    out: dict[str, Any] = {}
    await flush(url)
    async with daemon.serve(url, plan.workers, work_dir) as served:
        load = await steps.run("daemon_e2e", lambda: daemon.e2e_rss(url, served, plan.tasks))
        if load:
            out |= {
                "e2e_serve_per_s": load["per_s"],
                "rss_idle_mb": load["rss_idle_mb"],
                "rss_mb": load["rss_mb"],
            }
        rest = await steps.run(
            "rest", lambda: daemon.rest_single(served, plan.single_tasks, plan.rest_connections)
        )
        rest1 = await steps.run("rest_1", lambda: daemon.rest_single(served, plan.single_tasks, 1))
        out["rest_1conn_per_s"] = rest1 and rest1["per_s"]
        batch = await steps.run("rest_batch", lambda: daemon.rest_batch(served, plan.tasks))
    out["rest_connections"] = plan.rest_connections
    for key, found in (("rest", rest), ("rest_batch", batch)):
        out[f"{key}_per_s"] = found and found["per_s"]
        out[f"{key}_server_cpu_share"] = found and found["server_cpu_share"]
    await flush(url)
    async with daemon.serve(url, plan.workers, work_dir) as served:
        fanout = await steps.run(
            "ws",
            lambda: ws.ws_fanout(url, served, plan.ws_clients, plan.ws_per_s, plan.ws_duration_s),
        )
    if fanout:
        out["ws"] = fanout
        out |= {f"ws_{k}": fanout.get(k) for k in ("lag_p50_ms", "lag_p99_ms", "cpu_share")}
    await flush(url)
    return out


async def loop_responsiveness(url: str, plan: Plan, work_dir: Path, steps: Steps) -> dict[str, Any]:
    """Issue 16's stalled-loop case against its own ``taskd serve``: eight big
    data_processing tasks, the API polled and an email timed meanwhile."""
    await flush(url)
    records = plan.responsive_records
    found = await steps.run("responsive", lambda: responsive.responsive(url, work_dir, records))
    await flush(url)
    out: dict[str, Any] = {"responsive_records": records, "responsive": found}
    return out | {f"responsive_{k}": found and found.get(k) for k in RESPONSIVE_KEYS}


# The responsiveness figures kept at the top level (for the targets and the detail table).
RESPONSIVE_KEYS = (
    "loop_lag_p99_ms_bound",
    "loop_lag_samples",
    "stats_p50_ms",
    "stats_p99_ms",
    "stats_max_ms",
    "email_s",
    "crunch_s",
    "blocked_warnings",
)


async def peer(name: str, python: str, url: str, plan: Plan, steps: Steps) -> dict[str, Any]:
    """One peer through ``python -m bench.peers`` in its own interpreter."""
    await flush(url)
    argv = [
        python,
        "-m",
        "bench.peers",
        name,
        "--redis-url",
        url,
        "--plan",
        json.dumps(plan.peer_plan()),
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env=child_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    limit_s = 120 + plan.tasks / 100
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.terminate()  # the harness stops its worker on SIGTERM
        await proc.wait()
        return {"error": f"timed out after {limit_s:.0f}s"}
    lines = stdout.decode().strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        result = {"error": "no result", "stderr": tail}
    note = result.get("error") or result.get("skipped")
    steps.say(f"peer {name}: " + (f"NOT RUN ({note})" if note else _brief(result)))
    return result


def _brief(result: dict[str, Any]) -> str:
    keys = (
        "e2e_per_s",
        "enqueue_per_s",
        "enqueue_batch_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "io_per_s",
    )
    return ", ".join(f"{k}={result.get(k)}" for k in keys)


def peer_names(only: set[str] | None) -> list[str]:
    """Peers to run, in the report's order."""
    return [n for n in MODULES if only is None or n in only]
