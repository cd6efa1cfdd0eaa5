"""The chaos suite's tools: daemon clusters, execution records, task census, figures.

Sizes: the short form runs in the default test run; ``TASKD_CHAOS_LONG=1`` selects the
issue's full sizes (see tests/chaos/README.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from taskd.model import STATUS_NAMES, Status, Task, TaskSpec, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.procs import DaemonProcess

LONG = os.environ.get("TASKD_CHAOS_LONG", "") == "1"
# A soak: the memory test runs this many seconds at its full rate (2,000 tasks/s).
SOAK_S = int(os.environ.get("TASKD_CHAOS_SOAK_S", "0") or 0)
HANDLERS = "tests.chaos.handlers"


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each scenario is."""

    crash_tasks: int
    crash_kill_every_s: float
    restart_tasks: int
    slow_tasks: int
    memory_tasks: int
    timeout_s: float  # per-test timeout


_SIZES = (
    Sizes(
        crash_tasks=10_000,
        crash_kill_every_s=3.0,
        restart_tasks=5_000,
        slow_tasks=3_000,
        memory_tasks=100_000,
        timeout_s=1800,
    )
    if LONG
    else Sizes(
        crash_tasks=1_500,
        crash_kill_every_s=2.0,
        restart_tasks=1_000,
        slow_tasks=400,
        memory_tasks=20_000,
        timeout_s=120,
    )
)
SIZES = (
    dataclasses.replace(_SIZES, memory_tasks=SOAK_S * 2000, timeout_s=SOAK_S + 600)
    if SOAK_S
    else _SIZES
)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write a small taskd.toml (scalars and lists of strings only)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return orjson.dumps(v).decode()
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(i) for i in v) + "]"
        return repr(v)

    lines = []
    for name, items in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {value(v)}" for k, v in items.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


class Cluster:
    """Any number of `taskd serve` processes on one queue, started, killed and restarted."""

    def __init__(
        self,
        root: Path,
        redis_url: str,
        queue: str,
        *,
        workers: int = 8,
        config: dict[str, dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.chaos_dir = root / "exec"
        self.chaos_dir.mkdir(parents=True, exist_ok=True)
        self.args = (
            "--redis-url",
            redis_url,
            "--handlers",
            HANDLERS,
            "--queues",
            queue,
            "--workers",
            str(workers),
        )
        conf = write_config(root / "taskd.toml", config or {})
        self.env = {"TASKD_CONFIG": str(conf), "TASKD_CHAOS_DIR": str(self.chaos_dir)}
        self.env |= env or {}
        self.daemons: list[DaemonProcess] = []  # every incarnation, dead ones too
        self.killed: dict[int, float] = {}  # pid -> monotonic time of SIGKILL/SIGSTOP
        self._spawned = 0

    def spawn(self, env: dict[str, str] | None = None) -> DaemonProcess:
        """Start one more daemon (not waiting for it)."""
        self._spawned += 1
        daemon = DaemonProcess(
            self.root / f"d{self._spawned}", *self.args, env=self.env | (env or {})
        )
        self.daemons.append(daemon)
        return daemon

    async def start(self, n: int, env: dict[str, str] | None = None) -> list[DaemonProcess]:
        """Start ``n`` daemons and wait until all are ready."""
        started = [self.spawn(env) for _ in range(n)]
        await asyncio.gather(*(d.ready() for d in started))
        return started

    @property
    def alive(self) -> list[DaemonProcess]:
        """Daemons still running."""
        return [d for d in self.daemons if d.proc.poll() is None]

    def kill(self, daemon: DaemonProcess) -> None:
        """SIGKILL one daemon and remember when."""
        self.killed[daemon.proc.pid] = time.monotonic()
        daemon.kill(signal.SIGKILL)
        daemon.proc.wait(10)

    def output(self) -> str:
        """Every daemon's log, concatenated."""
        return "\n".join(d.output() for d in self.daemons)

    def close(self) -> None:
        """Make sure every daemon is gone."""
        for daemon in self.daemons:
            if daemon.proc.poll() is None:
                daemon.kill(signal.SIGCONT)
            daemon.close()


@dataclass(slots=True)
class Execution:
    """One handler invocation, from its start line to its end line (if it ended)."""

    task_id: str
    attempt: int
    pid: int
    started: float
    ended: float | None = None
    events: list[str] = field(default_factory=list)


def read_executions(folder: Path) -> dict[str, list[Execution]]:
    """Task id -> its executions in start order, from every process's record file."""
    runs: dict[tuple[str, int, int], Execution] = {}
    for path in sorted(folder.glob("exec-*.jsonl")):
        for raw in path.read_bytes().splitlines():
            line = orjson.loads(raw)
            key = (line["id"], line["attempt"], line["pid"])
            if line["ev"] == "start":
                runs[key] = Execution(line["id"], line["attempt"], line["pid"], line["t"])
            elif key in runs:
                runs[key].events.append(line["ev"])
                if line["ev"] == "end":
                    runs[key].ended = line["t"]
    by_task: dict[str, list[Execution]] = defaultdict(list)
    for run in sorted(runs.values(), key=lambda r: r.started):
        by_task[run.task_id].append(run)
    return dict(by_task)


def max_overlap(runs: Iterable[Execution], pid: int) -> int:
    """The largest number of executions of one process running at the same moment."""
    edges: list[tuple[float, int]] = []
    for run in runs:
        if run.pid == pid and run.ended is not None:
            edges += [(run.started, 1), (run.ended, -1)]
    peak = level = 0
    for _, step in sorted(edges):
        level += step
        peak = max(peak, level)
    return peak


def specs(
    task_type: str, payloads: Sequence[dict[str, Any]], queue: str, **kw: Any
) -> list[TaskSpec]:
    """Submit specifications for one payload each."""
    return [make_spec(task_type, p, queue=queue, **kw) for p in payloads]


async def submit(store: Store, all_specs: Sequence[TaskSpec], batch: int = 500) -> list[Task]:
    """Submit in batches of one round trip each."""
    tasks: list[Task] = []
    for i in range(0, len(all_specs), batch):
        tasks += [t for t, _ in await store.submit(all_specs[i : i + batch])]
    return tasks


async def census(store: Store, queue: str, ids: Sequence[str]) -> dict[str, Task | None]:
    """Every task's current record (None when it no longer exists)."""
    found: dict[str, Task | None] = {}
    for i in range(0, len(ids), 2000):
        chunk = ids[i : i + 2000]
        for task_id, task in zip(
            chunk, await store.get_many([(queue, t) for t in chunk]), strict=True
        ):
            found[task_id] = task
    return found


def statuses(tasks: dict[str, Task | None]) -> Counter[str]:
    """How many tasks are in each status ('lost' for missing ones)."""
    return Counter(t.status.value if t else "lost" for t in tasks.values())


async def all_finished(store: Store, queue: str, ids: Sequence[str]) -> bool:
    """True once every task is completed, failed or cancelled."""
    counts = statuses(await census(store, queue, ids))
    return sum(counts[s] for s in ("completed", "failed", "cancelled")) == len(ids)


async def check_stats(store: Store, queue: str, tasks: dict[str, Task | None]) -> dict[str, int]:
    """Assert the O(1) stats counters equal the tasks' real states; return them."""
    stats = await store.stats(queue)
    real = statuses(tasks)
    for name in STATUS_NAMES:
        assert stats[name] == real[name], (name, stats, real)
    assert stats["total"] == len(tasks) - real["lost"], (stats, real)
    return {name: stats[name] for name in (*STATUS_NAMES, "total")}


def duplicates(runs: dict[str, list[Execution]]) -> int:
    """Executions beyond the first of each task."""
    return sum(len(r) - 1 for r in runs.values())


def report(title: str, **figures: Any) -> None:
    """Print the scenario's figures (shown with ``pytest -s``) and append them to
    ``$TASKD_CHAOS_REPORT`` when set."""
    line = {"test": title, "long": LONG} | figures
    print(f"\n[chaos] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    target = os.environ.get("TASKD_CHAOS_REPORT")
    if target:
        with Path(target).open("ab") as out:
            out.write(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS) + b"\n")


async def until(predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Poll a plain (non-async) condition against a deadline."""
    await eventually(lambda: asyncio.sleep(0, result=predicate()), timeout_s=timeout_s)


def logged(daemon: DaemonProcess, event: str) -> int:
    """How many JSON log lines of ``event`` the daemon wrote so far."""
    return daemon.output().count(f'"event":"{event}"')


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer and how long it took."""

    status: int
    body: Any
    elapsed_s: float


async def http(
    method: str,
    url: str,
    body: Any = None,
    timeout_s: float = 10.0,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One HTTP request to a daemon (urllib in a thread); errors become their status.

    The body is parsed as JSON when it is JSON, else kept as text."""

    def call() -> tuple[int, bytes]:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    started = time.monotonic()
    status, raw = await asyncio.to_thread(call)
    try:
        parsed: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = raw.decode(errors="replace")
    return Reply(status, parsed, time.monotonic() - started)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def is_terminal(task: Task | None) -> bool:
    """Completed, failed or cancelled."""
    return task is not None and task.status in {Status.COMPLETED, Status.FAILED, Status.CANCELLED}
