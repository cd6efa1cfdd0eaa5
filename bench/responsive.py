"""Issue 16's "the event loop never stalls", measured against a real ``taskd serve``.

Eight ``data_processing`` tasks over generated sample records (1,000,000 each at full
size) crunch at once. Meanwhile one keep-alive client polls the stats overview every
20 ms and times each answer; once every one of the eight has reported progress, one
``email`` task (outbox: no SMTP server is configured) is timed from submit to completed.
The daemon's own loop lag comes from its ``/metrics`` histogram, read before and after:
a percentile from bucket counts is only known as a bucket bound, so it is reported as one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.daemon import Serve, serve
from bench.procs import cpu_seconds
from bench.stats import percentile
from taskd.client import Client
from taskd.model import Task

CRUNCHERS = 8
FULL_RECORDS = 1_000_000
POLL_S = 0.02  # between stats requests
LAG_HISTOGRAM = "taskd_event_loop_lag_sampled_seconds"
STATS_PATH = "/api/tasks/stats/overview"
EMAIL = {"to": "bench@example.com", "subject": "meanwhile", "body": "sent during the crunch"}
TASK_TIMEOUT_S = 1800.0  # a loaded machine must not turn the workload into timeouts


@dataclass
class StatsPoller:
    """Times ``GET /api/tasks/stats/overview`` every POLL_S over one keep-alive session."""

    http: aiohttp.ClientSession
    base: str
    seconds: list[float] = field(default_factory=list)
    failures: int = 0  # answers other than 200 (a 503 past the API's deadline)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Poll until ``stop``; a slow answer delays the next tick, never bunches them."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            began = loop.time()
            async with self.http.get(self.base + STATS_PATH) as reply:
                await reply.read()
                ok = reply.status == 200
            self.seconds.append(loop.time() - began)
            self.failures += not ok
            left = began + POLL_S - loop.time()
            if left > 0:
                # A fixed request rate: this sleep paces the poller, it synchronises nothing.
                await asyncio.sleep(left)


async def responsive(url: str, work_dir: Path, records: int) -> dict[str, Any]:
    """Run the workload with ``records`` per data task; the figures the issue's target names."""
    env = {"TASKD_SMTP_HOST": ""}  # the email goes to the outbox: no mail server involved
    async with (
        serve(url, CRUNCHERS + 2, work_dir, env) as served,
        Client(url, handlers=()) as client,
        aiohttp.ClientSession() as http,
    ):
        before = await lag_buckets(http, served.base)
        blocked_before = blocked_warnings(served)
        poller = StatsPoller(http, served.base)
        polling = asyncio.create_task(poller.run())
        started, cpu = time.perf_counter(), cpu_seconds(served.pid)
        ids = [await _submit(client, "data_processing", {"records": records}) for _ in range(8)]
        await _until_all_report_progress(client, ids)
        email_s, still_crunching = await _email(client, ids)
        done = await asyncio.gather(*(client.wait(i, TASK_TIMEOUT_S) for i in ids))
        crunch_s = time.perf_counter() - started
        cpu = cpu_seconds(served.pid) - cpu
        poller.stop.set()
        await polling
        lag = lag_p99(before, await lag_buckets(http, served.base))
        blocked = blocked_warnings(served) - blocked_before
    _check_completed(done)
    return {
        "records": records,
        "tasks": CRUNCHERS,
        "crunch_s": round(crunch_s, 2),
        "daemon_cpu_share": round(cpu / crunch_s, 2),  # 1.0 = one core busy throughout
        "email_s": round(email_s, 3),
        "email_while_crunching": still_crunching,
        **lag,
        **_latency(poller),
        "blocked_warnings": blocked,
    }


async def _submit(client: Client, task_type: str, payload: dict[str, Any]) -> str:
    return (await client.submit(task_type, payload, timeout_s=TASK_TIMEOUT_S)).id


async def _until_all_report_progress(
    client: Client, ids: list[str], timeout_s: float = 300
) -> None:
    """Poll (with a deadline) until every data task has reported progress: all crunch."""
    deadline = time.monotonic() + timeout_s
    while True:
        tasks = [await client.get(i) for i in ids]
        if all(t.progress > 0 or t.status == "completed" for t in tasks):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the data tasks reported no progress within {timeout_s:.0f}s")
        await asyncio.sleep(0.05)


async def _email(client: Client, crunching: list[str]) -> tuple[float, int]:
    """Seconds from submitting an email to its completion, and how many of the data
    tasks were still unfinished then (all eight: it did not wait for them)."""
    began = time.perf_counter()
    task = await client.wait(await _submit(client, "email", EMAIL), 120)
    took = time.perf_counter() - began
    _check_completed([task])
    still = [await client.get(i) for i in crunching]
    return took, sum(t.status != "completed" for t in still)


def _check_completed(tasks: list[Task]) -> None:
    for task in tasks:
        if task.status != "completed":
            raise RuntimeError(f"{task.task_type} task ended {task.status}: {task.error}")


def _latency(poller: StatsPoller) -> dict[str, Any]:
    ms = [s * 1000 for s in poller.seconds]
    return {
        "stats_requests": len(ms),
        "stats_failures": poller.failures,
        "stats_p50_ms": round(percentile(ms, 50), 1),
        "stats_p99_ms": round(percentile(ms, 99), 1),
        "stats_max_ms": round(max(ms), 1),
    }


async def lag_buckets(http: aiohttp.ClientSession, base: str) -> dict[float, float]:
    """The daemon's loop-lag histogram now: cumulative count per upper bound (seconds)."""
    async with http.get(f"{base}/metrics") as reply:
        text = await reply.text()
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{LAG_HISTOGRAM}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
    if not buckets:
        raise RuntimeError(f"the daemon's /metrics has no {LAG_HISTOGRAM}")
    return buckets


def lag_p99(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """The smallest bucket bound holding at least 99 % of the samples taken in between
    (None when only +Inf does), and how many samples there were."""
    delta = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    samples = delta[float("inf")]
    bound = next((le for le, n in delta.items() if n >= 0.99 * samples), float("inf"))
    finite = bound != float("inf") and samples > 0
    return {
        "loop_lag_p99_ms_bound": round(bound * 1000, 1) if finite else None,
        "loop_lag_samples": int(samples),
        "loop_lag_over_50ms": int(samples - delta.get(0.05, 0.0)),
    }


def blocked_warnings(daemon: Serve) -> int:
    """``event_loop_blocked`` warnings in the daemon's log so far."""
    try:
        text = daemon.child.log_path.read_text(errors="replace")
    except OSError:
        return 0
    return text.count('"event_loop_blocked"')
