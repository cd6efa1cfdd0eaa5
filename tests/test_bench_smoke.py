"""Smoke test of the benchmark suite (bench/): a tiny taskd-only run keeps its JSON promise.

The benchmark itself is never part of the test run; this only proves that it still runs
against the current engine and reports every headline number. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import engine, responsive
from bench.server import redis_target

REPO = Path(__file__).resolve().parent.parent
HEADLINE = (
    "e2e_per_s",
    "enqueue_per_s",
    "enqueue_batch_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "io_efficiency",
    "rss_mb",
    "redis_bytes_per_task",
)


def _bench(module: str, *args: str) -> str:
    """Run ``python -m module args`` from the repository; its stdout, once it exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_bench_json_reports_every_headline_number() -> None:
    """`python -m bench --tasks 200 --only taskd --json` prints positive headline numbers
    and the loop-responsiveness figures."""
    result = json.loads(_bench("bench", "--tasks", "200", "--only", "taskd", "--json"))
    assert result["errors"] == {}
    for key in HEADLINE:
        value = result[key]
        assert isinstance(value, int | float), f"{key} = {value!r}"
        assert value > 0, f"{key} = {value!r}"
    assert result["peers"] == {}
    assert result["responsive_records"] == 10_000
    assert result["responsive_email_s"] > 0
    assert result["responsive_loop_lag_samples"] > 0


def test_loop_lag_p99_is_the_smallest_bound_holding_99_percent() -> None:
    """The bench reads the daemon's lag p99 from the histogram's bucket deltas over the
    run: samples taken before it do not count, and the answer is a bucket bound."""
    inf = float("inf")
    before = {0.01: 50.0, 0.05: 50.0, 0.1: 50.0, inf: 50.0}
    after = {0.01: 150.0, 0.05: 248.0, 0.1: 249.0, inf: 250.0}  # 200 new: 198 <= 50 ms
    assert responsive.lag_p99(before, after) == {
        "loop_lag_p99_ms_bound": 50.0,
        "loop_lag_samples": 200,
        "loop_lag_over_50ms": 2,
    }
    after[0.05] = 247.0  # 197 of 200 is under 99 %
    assert responsive.lag_p99(before, after)["loop_lag_p99_ms_bound"] == 100.0


async def test_chord_workload_reports_overhead_over_plain_tasks(tmp_path: Path) -> None:
    """bench.engine.chord runs n plain tasks and a chord of n members + callback on its
    own Redis and reports both rates, Redis CPU per task and their ratio."""
    async with redis_target(None, tmp_path) as target:
        result = await engine.chord(target.url, 50, 2)
    assert set(result) == {
        "plain_per_s",
        "chord_per_s",
        "overhead",
        "plain_redis_cpu_us_per_task",
        "chord_redis_cpu_us_per_task",
    }
    assert all(value > 0 for value in result.values()), result


def test_handoff_prototype_measures_each_path() -> None:
    """`python -m bench.handoff` prints p50/p99 for the three paths, and its hand-off
    worker gets every task started through its inbox (the path it claims to measure)."""
    out = _bench("bench.handoff", "--tasks", "20", "--rounds", "1")
    rows = [line.split() for line in out.splitlines() if "handed over" in line]
    assert [row[0] for row in rows] == ["start-after-wake", "hand-off", "lpush-brpop"]
    handed = {row[0]: row[-3].lstrip("(") for row in rows}
    assert handed == {"start-after-wake": "0", "hand-off": "20", "lpush-brpop": "0"}
    assert all(float(row[2]) > 0 for row in rows)
