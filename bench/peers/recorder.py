"""What every peer's task handler calls: counts tasks per run and reports a finished run.

Handlers run in the peer's worker process, so a run's result travels through Redis: when a
run's last expected task has been handled, one key ``bench:done:<run>`` gets the first and
last handling times and every submit -> start delay. All times are CLOCK_MONOTONIC, which
Linux shares between processes, so the submitter's clock and the worker's agree.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field

import redis

DONE_PREFIX = "bench:done:"


def now() -> float:
    """Seconds on the machine-wide monotonic clock."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class _Run:
    count: int = 0
    first: float = 0.0
    lags: list[float] = field(default_factory=list)


class Recorder:
    """Per-process tally of handled tasks; thread-safe for thread-pool workers."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url or os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None

    def hit(self, run: str, expected: int, sent: float, started: float) -> None:
        """Count one handled task; ``sent`` = 0 means no latency sample for it."""
        ended = now()
        with self._lock:
            state = self._runs.setdefault(run, _Run())
            state.count += 1
            if state.count == 1:
                state.first = started
            if sent:
                state.lags.append(started - sent)
            finished = state.count == expected
        if finished:
            self._report(run, state, ended)

    def _report(self, run: str, state: _Run, ended: float) -> None:
        if self._client is None:
            self._client = redis.Redis.from_url(self._url)
        record = {"count": state.count, "first": state.first, "last": ended, "lags": state.lags}
        self._client.set(DONE_PREFIX + run, json.dumps(record), ex=3600)


RECORDER = Recorder()
