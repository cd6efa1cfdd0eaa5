"""The `taskd` client commands, run as real processes against a real `taskd serve`.

Exit codes: 0 success, 1 the API refused, 2 usage error, 3 unreachable, 4 unfinished.
Every failure must be one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskd import __version__ as taskd_version_text
from taskd.model import Status, make_spec
from taskd.store import Store
from taskd.workflow import make_workflow
from tests.conftest import eventually
from tests.procs import DaemonProcess

pytestmark = pytest.mark.slow
SERVED = f"cli-{uuid.uuid4().hex[:8]}"  # the module's daemon runs this queue's tasks
DRAINED = f"{SERVED}-drain"  # served too; only the drain test uses it


@dataclass(frozen=True)
class Run:
    """What one `taskd` invocation did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.out)


@pytest.fixture(scope="module")
async def daemon(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DaemonProcess]:
    """One `taskd serve` for the module, serving SERVED and DRAINED with the test handlers."""
    proc = DaemonProcess(
        tmp_path_factory.mktemp("cli"),
        "--redis-url",
        redis_url,
        "--queues",
        f"{SERVED},{DRAINED}",
        "--handlers",
        "tests.daemon_handlers",
        env={"TASKD_RATE_LIMIT_PER_S": "0", "TASKD_SWEEP_INTERVAL_S": "0.1"},
    )
    try:
        await proc.ready()
        yield proc
    finally:
        proc.close()


async def taskd(
    daemon: DaemonProcess | None, *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> Run:
    """Run `python -m taskd ARGS` against the daemon (TASKD_URL) and collect its output."""
    base = {"TASKD_URL": daemon.url} if daemon else {}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskd",
        *args,
        env={k: v for k, v in os.environ.items() if k != "TASKD_TOKEN"} | base | (env or {}),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    run = Run(proc.returncode or 0, out.decode(), err.decode())
    assert "Traceback" not in run.err, run.err
    return run


def one_line_error(run: Run, code: int, *fragments: str) -> None:
    """The run failed with ``code`` and a single stderr line holding every fragment."""
    assert run.code == code, run
    assert run.err.startswith("taskd: "), run.err
    assert run.err.count("\n") == 1, run.err
    for fragment in fragments:
        assert fragment in run.err, run.err


async def submitted(daemon: DaemonProcess, *args: str) -> dict[str, Any]:
    """Submit through the CLI (--json) and return the task."""
    run = await taskd(daemon, "submit", *args, "--json")
    assert run.code == 0, run
    task: dict[str, Any] = run.json()
    return task


async def test_submit_prints_the_task_and_get_shows_it(daemon: DaemonProcess, queue: str) -> None:
    """`submit` prints one line with the new id; `get` shows every field, payload included."""
    run = await taskd(daemon, "submit", "sleepy", "--payload", '{"s": 0}', "--queue", queue)
    assert run.code == 0, run
    task_id, status = run.out.split()[:2]
    assert status == "pending"
    shown = await taskd(daemon, "get", task_id)
    assert shown.code == 0
    assert f"id           {task_id}" in shown.out
    assert f"queue        {queue}" in shown.out
    assert '"s": 0' in shown.out
    assert (await taskd(daemon, "get", task_id, "--json")).json()["id"] == task_id


async def test_get_cancel_retry_resolve_a_unique_id_prefix(
    daemon: DaemonProcess, store: Store, queue: str
) -> None:
    """`get 4596770e` (the 8 digits the dashboard shows) finds the one task whose id
    starts so; cancel and retry accept a prefix too."""
    ((task, _),) = await store.submit([make_spec("sleepy", queue=queue, delay_s=3600)])
    shown = await taskd(daemon, "get", task.id[:8], "--json")
    assert shown.code == 0, shown
    assert shown.json()["id"] == task.id
    cancelled = await taskd(daemon, "cancel", task.id[:8], "--json")
    assert (cancelled.code, cancelled.json()["status"]) == (0, "cancelled")
    retried = await taskd(daemon, "retry", task.id[:10], "--json")
    assert (retried.code, retried.json()["id"]) == (0, task.id)


async def test_id_prefix_matching_none_or_several_is_a_clear_error(
    daemon: DaemonProcess, store: Store, queue: str
) -> None:
    """A prefix no task id starts with, or several do, ends with exit 1 and says which."""
    specs = [make_spec("sleepy", queue=queue, delay_s=3600) for _ in range(17)]
    firsts = [t.id[0] for t, _ in await store.submit(specs)]
    shared = next(c for c in firsts if firsts.count(c) > 1)  # 17 ids, 16 hex digits
    ambiguous = await taskd(daemon, "get", shared)
    one_line_error(ambiguous, 1, f"{shared!r}", "ambiguous")
    missing = await taskd(daemon, "get", "0" * 20)
    one_line_error(missing, 1, f"no task id starts with {'0' * 20!r}")


async def test_version_option_and_bench_help(daemon: DaemonProcess) -> None:
    """`taskd --version` prints the version; `taskd bench --help` prints help, exit 0."""
    version = await taskd(None, "--version")
    assert (version.code, version.out.split()[:1]) == (0, ["taskd"])
    assert taskd_version_text in version.out
    bench = await taskd(None, "bench", "--help")
    assert bench.code == 0, bench
    assert "usage: taskd bench" in bench.out


async def test_submit_options_and_payload_from_a_file_or_stdin(
    daemon: DaemonProcess, queue: str, tmp_path: Path
) -> None:
    """--payload @file / @-, --priority, --queue, --delay, --name and --unique-key reach the API."""
    path = tmp_path / "payload.json"
    path.write_text('{"s": 1.5}')
    task = await submitted(
        daemon,
        "sleepy",
        f"--payload=@{path}",
        "--priority=9",
        f"--queue={queue}",
        "--delay=3600",
        "--name=nightly",
        "--unique-key=k1",
        "--max-retries=0",
    )
    assert task["payload"] == {"s": 1.5}
    assert (task["priority"], task["queue"], task["status"]) == (9, queue, "scheduled")
    assert (task["name"], task["unique_key"], task["max_retries"]) == ("nightly", "k1", 0)
    run = await taskd(
        daemon, "submit", "sleepy", "--payload", "@-", "--queue", queue, "--json", stdin='{"s": 2}'
    )
    assert run.json()["payload"] == {"s": 2}


async def test_submit_wait_ends_with_the_outcome(daemon: DaemonProcess) -> None:
    """--wait prints the finished task: exit 0 when completed, 4 when it failed."""
    done = await taskd(
        daemon, "submit", "sleepy", "--payload", '{"s": 0}', "--queue", SERVED, "--wait"
    )
    assert done.code == 0, done
    assert "status       completed" in done.out
    assert '"attempt": 1' in done.out
    done_json = await taskd(daemon, "submit", "sleepy", "--queue", SERVED, "--wait", "--json")
    assert done_json.json()["status"] == "completed"
    failed = await taskd(
        daemon,
        "submit",
        "data_processing",
        "--payload",
        '{"source": "missing.csv"}',
        "--queue",
        SERVED,
        "--wait",
    )
    assert failed.code == 4, failed
    assert "status       failed" in failed.out
    assert "failed: payload.source" in failed.err.splitlines()[-1]


async def test_api_errors_exit_1_with_the_api_message(daemon: DaemonProcess) -> None:
    """A refused submit and an unknown task end with exit 1 and the API's own message."""
    invalid = await taskd(daemon, "submit", "email", "--payload", '{"subject": "hi"}')
    one_line_error(invalid, 1, "payload.recipient", "(HTTP 422)")
    unknown = await taskd(daemon, "submit", "no_such_type")
    one_line_error(unknown, 1, "unknown task type", "(HTTP 422)")
    missing = await taskd(daemon, "get", "0" * 32)
    one_line_error(missing, 1, "not found", "(HTTP 404)")


async def test_usage_errors_exit_2(daemon: DaemonProcess, tmp_path: Path) -> None:
    """Bad options are refused before anything is sent: exit 2 with click's message."""
    cases = [
        ("get", "not-an-id"),
        ("submit", "sleepy", "--payload", "{nope"),
        ("submit", "sleepy", "--payload", "[1, 2]"),
        ("submit", "sleepy", f"--payload=@{tmp_path / 'absent.json'}"),
        ("submit", "sleepy", "--priority", "11"),
        ("list", "--url", "ftp://example"),
        ("pause", "bad name"),
        ("purge", "somequeue"),  # no --yes and no terminal to ask on
    ]
    for args in cases:
        run = await taskd(daemon, *args)
        assert run.code == 2, (args, run)
        assert "Error:" in run.err, (args, run)


async def test_task_id_with_anything_but_hex_digits_is_a_usage_error(
    daemon: DaemonProcess, store: Store, queue: str
) -> None:
    """A task id argument is 1-32 hex digits and nothing else: one that merely starts
    with hex digits (a space, a path, 33 digits) is refused with exit 2 before anything
    is sent, so it can never reach another route (`retry` of this 32-character "id"
    used to POST /api/queues/<queue>/pause)."""
    await store.ensure_queue(queue)
    crafted = f"a/../../queues/{queue}/pause#"
    crafted += "x" * (32 - len(crafted))
    for args in (
        ("get", "ab cd"),
        ("get", "a" * 33),
        ("cancel", "0" * 32 + "/"),
        ("retry", crafted),
    ):
        run = await taskd(daemon, *args)
        assert run.code == 2, (args, run)
        assert "Error: Invalid value for 'TASK_ID'" in run.err, (args, run)
    assert await store.paused_queues([queue]) == set()


async def test_delay_or_timeout_that_is_not_a_finite_number_is_a_usage_error(
    daemon: DaemonProcess, store: Store, queue: str
) -> None:
    """`--delay nan` or `--delay inf` is refused with exit 2 and creates nothing (click's
    range check let them through and the task was created to start at once), and so is
    `drain --timeout nan`."""
    for value in ("nan", "inf", "-inf"):
        run = await taskd(daemon, "submit", "sleepy", "--queue", queue, "--delay", value)
        assert run.code == 2, (value, run)
        assert "Error: Invalid value for '--delay'" in run.err, run
    drain = await taskd(daemon, "drain", queue, "--timeout", "nan")
    assert drain.code == 2, drain
    assert (await store.stats(queue))["total"] == 0


async def test_unreachable_server_exits_3(free_port: int) -> None:
    """Nothing listening: exit 3 and one line naming the URL, for requests and the socket."""
    url = f"http://127.0.0.1:{free_port}"
    for args in (("stats",), ("watch",), ("queues", "--json")):
        run = await taskd(None, *args, "--url", url)
        one_line_error(run, 3, f"cannot reach taskd at {url}")


async def test_list_filters_and_pages(daemon: DaemonProcess, store: Store, queue: str) -> None:
    """--queue, --status, --type and --limit filter; a full page offers the next cursor."""
    await store.submit([make_spec("sleepy", queue=queue) for _ in range(3)])
    await store.submit([make_spec("email", {"to": "a@example.com"}, queue=queue)])
    run = await taskd(
        daemon, "list", "--queue", queue, "--status", "pending", "--type", "sleepy", "--limit", "2"
    )
    assert run.code == 0, run
    lines = run.out.splitlines()
    assert lines[0].split()[:5] == ["ID", "STATUS", "PRI", "TYPE", "QUEUE"]
    rows = [line for line in lines[1:] if not line.startswith("(more")]
    assert len(rows) == 2
    assert all(" sleepy " in row and queue in row for row in rows)
    assert lines[-1].startswith("(more: --cursor ")
    page = (await taskd(daemon, "list", "--queue", queue, "--limit", "10", "--json")).json()
    assert len(page["tasks"]) == 4
    assert (await taskd(daemon, "list", "--queue", f"{queue}-none")).out.strip() == "no tasks"


async def test_stats_shows_counts_throughput_and_depth(daemon: DaemonProcess) -> None:
    """`stats` prints every status and the throughput; --json is the overview itself."""
    run = await taskd(daemon, "stats")
    assert run.code == 0
    for word in ("pending", "processing", "completed", "total", "throughput", "ready depth"):
        assert word in run.out
    body = (await taskd(daemon, "stats", "--json")).json()
    assert {"total", "throughput", "depth_by_priority"} <= set(body)


async def test_cancel_and_retry(daemon: DaemonProcess, store: Store, queue: str) -> None:
    """`cancel` cancels a waiting task, a second cancel is a 409, `retry` requeues it."""
    ((task, _),) = await store.submit([make_spec("sleepy", queue=queue)])
    cancelled = await taskd(daemon, "cancel", task.id)
    assert cancelled.code == 0, cancelled
    assert cancelled.out.startswith(f"cancelled {task.id}  cancelled")
    again = await taskd(daemon, "cancel", task.id)
    one_line_error(again, 1, "cannot cancel", "(HTTP 409)")
    retried = await taskd(daemon, "retry", task.id, "--json")
    assert retried.json()["status"] == "pending"
    assert (await store.get(task.id)).status == Status.PENDING


async def test_cancel_of_a_running_task_asks_it_to_stop(
    daemon: DaemonProcess, store: Store
) -> None:
    """A running task is 'cancelling' at first, then cancelled by its worker."""
    ((task, _),) = await store.submit([make_spec("sleepy", {"s": 30}, queue=SERVED)])

    async def running() -> bool:
        return (await store.get(task.id)).status == Status.PROCESSING

    await eventually(running)
    run = await taskd(daemon, "cancel", task.id)
    assert run.code == 0, run
    assert run.out.startswith("cancelling (running: the worker stops it)")

    async def cancelled() -> bool:
        return (await store.get(task.id)).status == Status.CANCELLED

    await eventually(cancelled)


async def test_queues_pause_resume_and_purge(
    daemon: DaemonProcess, store: Store, queue: str
) -> None:
    """`queues` lists the queue; pause and resume flip its shared state; purge cancels."""
    await store.submit([make_spec("sleepy", queue=queue) for _ in range(3)])
    table = await taskd(daemon, "queues")
    row = next(line for line in table.out.splitlines() if line.startswith(queue + " "))
    assert row.split()[1:3] == ["running", "3"]
    listed = (await taskd(daemon, "queues", "--json")).json()["queues"]
    assert queue in [q["name"] for q in listed]
    paused = await taskd(daemon, "pause", queue)
    assert paused.out.startswith(f"queue {queue} is paused: 3 pending"), paused
    assert await store.paused_queues([queue]) == {queue}
    resumed = await taskd(daemon, "resume", queue, "--json")
    assert resumed.json()["paused"] is False
    purged = await taskd(daemon, "purge", queue, "--yes")
    assert purged.out.strip() == f"purged 3 waiting tasks of queue {queue}"
    assert (await store.stats(queue))["cancelled"] == 3
    again = await taskd(daemon, "purge", queue, "--yes", "--json")
    assert again.json() == {"queue": queue, "purged": 0}
    one_line_error(await taskd(daemon, "pause", f"{queue}-none"), 1, "not found", "(HTTP 404)")


async def test_drain_waits_until_the_queue_is_empty(daemon: DaemonProcess, store: Store) -> None:
    """`drain` returns once no task of the queue is unfinished."""
    ids = [
        t.id
        for t, _ in await store.submit(
            [make_spec("sleepy", {"s": 0.3}, queue=DRAINED) for _ in range(6)]
        )
    ]
    run = await taskd(daemon, "drain", DRAINED, "--timeout", "30")
    assert run.code == 0, run
    assert run.out.strip() == f"queue {DRAINED} is drained"
    assert {(await store.get(i)).status for i in ids} == {Status.COMPLETED}


async def test_drain_times_out_with_exit_4(daemon: DaemonProcess, store: Store, queue: str) -> None:
    """A queue nobody serves does not drain: a warning says why, and --timeout ends it."""
    await store.submit([make_spec("sleepy", queue=queue)])
    run = await taskd(daemon, "drain", queue, "--timeout", "0.5")
    assert run.code == 4, run
    assert f"no running daemon serves queue {queue}" in run.err
    assert run.err.splitlines()[-1] == f"taskd: queue {queue} not drained after 0.5 s: 1 tasks left"


async def test_drain_waits_for_a_workflow_task_still_waiting(
    daemon: DaemonProcess, store: Store, queue: str
) -> None:
    """A queue whose only task waits on a dependency in another queue is not drained: the
    task will run there later (drain waits for every unfinished task, waiting too)."""
    spec = make_workflow(
        {
            "tasks": [
                {"key": "a", "task_type": "sleepy", "queue": queue + "-parent"},
                {"key": "b", "task_type": "sleepy", "queue": queue, "depends_on": ["a"]},
            ]
        }
    )
    await store.submit_workflow(spec)
    run = await taskd(daemon, "drain", queue, "--timeout", "0.5")
    assert run.code == 4, run
    assert run.err.splitlines()[-1] == f"taskd: queue {queue} not drained after 0.5 s: 1 tasks left"


def _ignore_sigint() -> None:
    """In the child before exec: what `taskd watch &` in a shell script inherits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def _watch(
    daemon: DaemonProcess, *args: str, sigint_ignored: bool = False
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskd",
        "watch",
        "--url",
        daemon.url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
        # The --json snapshot is one line holding the newest tasks of every queue the
        # suite's Redis has seen: far over asyncio's 64 KiB default line limit.
        limit=16 * 1024 * 1024,
    )


async def _line_with(proc: asyncio.subprocess.Process, text: str, timeout_s: float = 15) -> str:
    assert proc.stdout is not None

    async def find() -> str:
        while True:
            line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
            assert line, "watch ended early"
            if text in line:
                return line

    return await asyncio.wait_for(find(), timeout_s)


async def test_watch_prints_events_until_ctrl_c(daemon: DaemonProcess, queue: str) -> None:
    """`watch` prints one line per event of its --queue; Ctrl-C ends it with exit 0."""
    proc = await _watch(daemon, "--queue", queue)
    try:
        assert proc.stderr is not None
        header = await asyncio.wait_for(proc.stderr.readline(), 15)
        assert header.decode().startswith(f"watching {daemon.url}: ")
        task = await submitted(daemon, "sleepy", "--queue", queue, "--name", "watched")
        line = await _line_with(proc, task["id"])
        assert line.split()[1:3] == [queue, "created"]
        assert " pending " in line
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_watch_stops_on_signal_whatever_it_inherited(
    daemon: DaemonProcess, queue: str, sig: signal.Signals
) -> None:
    """`watch` ends with exit 0 on SIGINT/SIGTERM even when started with SIGINT ignored.

    A shell script's background job (`taskd watch &`, a CI step run with `&`) starts
    with SIGINT ignored; the test suite itself run that way once made `watch` hang.
    """
    proc = await _watch(daemon, "--json", "--queue", queue, sigint_ignored=True)
    try:
        await _line_with(proc, '"type":"snapshot"')
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_watch_json_prints_one_message_per_line(daemon: DaemonProcess, queue: str) -> None:
    """`watch --json` prints the snapshot, then events messages, each one JSON line."""
    proc = await _watch(daemon, "--json", "--queue", queue)
    try:
        first = json.loads(await _line_with(proc, '"type":"snapshot"'))
        assert "last_event_id" in first
        task = await submitted(daemon, "sleepy", "--queue", queue)
        message = json.loads(await _line_with(proc, task["id"]))
        assert message["type"] == "events"
        assert {e["queue"] for e in message["events"]} == {queue}
        assert task["id"] in [e["task"]["id"] for e in message["events"]]
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 15)


async def test_token_from_taskd_token(redis_url: str, tmp_path: Path, queue: str) -> None:
    """TASKD_TOKEN is sent as a Bearer token, to the API and the WebSocket alike."""
    secured = DaemonProcess(
        tmp_path / "auth",
        "--redis-url",
        redis_url,
        "--queues",
        queue,
        env={"TASKD_AUTH_TOKENS": "full-1", "TASKD_READ_TOKENS": "read-1"},
    )
    try:
        await secured.ready()
        one_line_error(await taskd(secured, "queues"), 1, "(HTTP 401)")
        assert (await taskd(secured, "queues", env={"TASKD_TOKEN": "full-1"})).code == 0
        refused = await taskd(secured, "pause", queue, env={"TASKD_TOKEN": "read-1"})
        one_line_error(refused, 1, "(HTTP 403)")
        assert (await taskd(secured, "pause", queue, env={"TASKD_TOKEN": "full-1"})).code == 0
        wrong = await taskd(secured, "watch", env={"TASKD_TOKEN": "wrong"})
        one_line_error(wrong, 1, "WebSocket refused", "TASKD_TOKEN", "(HTTP 401)")
    finally:
        secured.close()


async def test_workflow_submit_get_list_cancel(daemon: DaemonProcess, tmp_path: Path) -> None:
    """`taskd workflow submit FILE` creates the workflow, `get` and `list` show it, and
    `cancel` ends its unfinished tasks."""
    body = {
        "name": "cli-flow",
        "tasks": [
            {"key": "first", "task_type": "sleepy", "queue": SERVED, "delay_s": 3600},
            {"key": "then", "task_type": "sleepy", "queue": SERVED, "depends_on": ["first"]},
        ],
    }
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(body))
    made = await taskd(daemon, "workflow", "submit", str(path), "--json")
    assert made.code == 0, made
    view = made.json()
    assert {k: t["status"] for k, t in view["tasks"].items()} == {
        "first": "scheduled",
        "then": "waiting",
    }
    shown = await taskd(daemon, "workflow", "get", view["id"])
    assert shown.code == 0
    assert "then" in shown.out
    assert "waiting" in shown.out
    listed = await taskd(daemon, "workflow", "list", "--status", "running", "--limit", "200")
    assert view["id"] in listed.out
    cancelled = await taskd(daemon, "workflow", "cancel", view["id"])
    assert cancelled.code == 0, cancelled
    assert "cancelled" in cancelled.out
    bad = await taskd(daemon, "workflow", "submit", "-", stdin='{"tasks": [{"key": "x"}]}')
    one_line_error(bad, 1, "task_type")


async def test_url_before_the_command_names_the_server(
    daemon: DaemonProcess, free_port: int
) -> None:
    """`taskd --url URL stats` talks to URL, as `taskd stats --url URL` does, over a
    TASKD_URL naming another server; a --url after the command still wins; a bad one is
    a usage error."""
    elsewhere = {"TASKD_URL": f"http://127.0.0.1:{free_port}"}  # nobody listens there
    run = await taskd(None, "--url", daemon.url, "stats", "--json", env=elsewhere)
    assert run.code == 0, run
    assert "total" in run.json()
    run = await taskd(None, "--url", elsewhere["TASKD_URL"], "stats", "--url", daemon.url)
    assert run.code == 0, run
    run = await taskd(None, "--url", "ftp://example.com", "stats")
    assert run.code == 2, run
    assert "--url" in run.err, run.err
