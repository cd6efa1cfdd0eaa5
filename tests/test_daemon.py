"""`taskd serve` as real OS processes: crash recovery, embedded server lifecycle, config."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from taskd.client import Client, embedded_url_file
from taskd.model import Status, make_spec
from taskd.store import Store
from tests.conftest import eventually
from tests.procs import REPO, DaemonProcess, free_port, pid_gone

pytestmark = pytest.mark.slow
FAST = {"TASKD_LEASE_S": "2", "TASKD_SWEEP_INTERVAL_S": "0.2"}


async def test_sigkilled_daemon_tasks_finish_on_survivor(
    store: Store, queue: str, redis_url: str, tmp_path: Path
) -> None:
    """Tasks held by a SIGKILLed daemon are reclaimed and completed by a surviving one."""
    args = (
        "--redis-url",
        redis_url,
        "--handlers",
        "tests.daemon_handlers",
        "--queues",
        queue,
        "--workers",
        "4",
    )
    a = DaemonProcess(tmp_path / "a", *args, env=FAST)
    b = DaemonProcess(tmp_path / "b", *args, env=FAST)
    try:
        await asyncio.gather(a.ready(), b.ready())
        submitted = [
            t
            for t, _ in await store.submit(
                [make_spec("sleepy", {"s": 1.0}, queue=queue, max_retries=3) for _ in range(16)]
            )
        ]
        held_by_a = f":{a.proc.pid}:"

        async def a_holds_some() -> list[str]:
            tasks = await store.get_many([(queue, t.id) for t in submitted])
            return [
                t.id
                for t in tasks
                if t and t.status == Status.PROCESSING and held_by_a in (t.worker or "")
            ]

        victims = await eventually(a_holds_some)
        a.kill(signal.SIGKILL)
        killed_at = time.monotonic()

        async def all_completed() -> bool:
            tasks = await store.get_many([(queue, t.id) for t in submitted])
            return all(t is not None and t.status == Status.COMPLETED for t in tasks)

        await eventually(all_completed, timeout_s=2 + 15)
        recovery_s = time.monotonic() - killed_at
        print(f"recovered {len(victims)} tasks of the killed daemon in {recovery_s:.2f}s")
        for task_id in victims:
            task = await store.get(task_id, queue)
            assert task.retry_count >= 1
            assert task.result is not None
            assert task.result["pid"] == b.proc.pid
    finally:
        a.close()
        b.close()


def _embedded_pid(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


async def test_embedded_server_stops_with_daemon(tmp_path: Path) -> None:
    """SIGTERM stops taskd with exit 0 and its embedded server with it."""
    daemon = DaemonProcess(tmp_path / "d")
    try:
        await daemon.ready()
        url = embedded_url_file(tmp_path / "d").read_text().strip()
        assert url.startswith("unix://")
        server_pid = _embedded_pid(url)
        daemon.kill(signal.SIGTERM)
        assert await daemon.wait() == 0
        await eventually(lambda: asyncio.sleep(0, result=pid_gone(server_pid)), timeout_s=10)
    finally:
        daemon.close()


async def test_no_orphan_server_after_sigkill_of_daemon(tmp_path: Path) -> None:
    """SIGKILL of taskd takes its embedded server down too (death-signal guard)."""
    daemon = DaemonProcess(tmp_path / "d")
    try:
        await daemon.ready()
        server_pid = _embedded_pid(embedded_url_file(tmp_path / "d").read_text().strip())
        daemon.kill(signal.SIGKILL)
        await daemon.wait()
        await eventually(lambda: asyncio.sleep(0, result=pid_gone(server_pid)), timeout_s=10)
    finally:
        daemon.close()


async def test_refused_second_daemon_leaves_the_first_ones_url_file(tmp_path: Path) -> None:
    """A second `taskd serve` refused because the data dir's embedded server runs exits 1
    and leaves the first daemon's ``redis/url`` in place: the file is not its to delete."""
    first = DaemonProcess(tmp_path / "d", "--workers", "1")
    second: DaemonProcess | None = None
    try:
        await first.ready()
        url_file = embedded_url_file(tmp_path / "d")
        url = url_file.read_text()
        second = DaemonProcess(tmp_path / "e", env={"TASKD_DATA_DIR": str(tmp_path / "d")})
        assert await second.wait() == 1
        assert "another embedded server" in second.output()
        assert url_file.read_text() == url
        client = Client(url.strip())
        try:
            assert (await client.submit("email", {"recipient": "a@b.c", "subject": "hi"})).id
        finally:
            await client.close()
    finally:
        if second is not None:
            second.close()
        first.close()


async def test_embedded_data_survives_restart(tmp_path: Path) -> None:
    """A task submitted to an embedded daemon is still there after a restart (AOF)."""
    first = DaemonProcess(tmp_path / "d", "--workers", "1", "--queues", "nobody-consumes")
    try:
        await first.ready()
        client = Client(embedded_url_file(tmp_path / "d").read_text().strip())
        task = await client.submit("email", {"recipient": "a@b.c", "subject": "hi"}, queue="parked")
        await client.close()
        first.kill(signal.SIGTERM)
        assert await first.wait() == 0
    finally:
        first.close()
    second = DaemonProcess(tmp_path / "d", "--workers", "1", "--queues", "nobody-consumes")
    try:
        await second.ready()
        client = Client(embedded_url_file(tmp_path / "d").read_text().strip())
        again = await client.get(task.id)
        await client.close()
        assert again.status == Status.PENDING
        assert again.payload == {"recipient": "a@b.c", "subject": "hi"}
    finally:
        second.kill(signal.SIGTERM)
        await second.wait()
        second.close()


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--port", "70000"], {}, "server.port"),
        ([], {"TASKD_WORKERS": "abc"}, "workers.count"),
        ([], {"TASKD_CONFIG": "{toml}"}, "server.prot"),
        ([], {"TASKD_CONFIG": "/nonexistent/taskd.toml"}, "/nonexistent/taskd.toml"),
    ],
)
def test_config_errors_give_one_clear_line(
    tmp_path: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    """A bad setting stops startup with exit 2 and one line naming the key, no traceback."""
    toml = tmp_path / "taskd.toml"
    toml.write_text("[server]\nprot = 1\n")
    env = {k: v.replace("{toml}", str(toml)) for k, v in env.items()}
    result = subprocess.run(
        [sys.executable, "-m", "taskd", "serve", *args],
        env=os.environ | {"PYTHONPATH": str(REPO), "TASKD_DATA_DIR": str(tmp_path)} | env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


async def test_port_in_use_is_one_line_naming_the_port(tmp_path: Path, redis_url: str) -> None:
    """A `taskd serve` on a port already taken exits 1 with one line naming the address
    and what to do, not a traceback, and the daemon listening there keeps running."""
    first = DaemonProcess(tmp_path / "a", "--redis-url", redis_url, "--workers", "1")
    try:
        await first.ready()
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "taskd", "serve", "--port", str(first.port)],
            env=os.environ
            | {"PYTHONPATH": str(REPO), "TASKD_DATA_DIR": str(tmp_path / "b")}
            | {"TASKD_REDIS_URL": redis_url, "TASKD_LOG_LEVEL": "error"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert f"127.0.0.1:{first.port}" in line
        assert "--port" in line
        assert first.proc.poll() is None
    finally:
        first.close()


def test_a_schedule_payload_its_type_refuses_stops_startup(tmp_path: Path, redis_url: str) -> None:
    """A [[schedule]] whose payload the API would refuse for its (built-in) type stops
    startup with one line naming the schedule's payload key, instead of a daemon that
    enqueues a task bound to fail at every occurrence."""
    toml = tmp_path / "taskd.toml"
    toml.write_text(
        '[[schedule]]\nname = "mail"\nevery_s = 60\ntask_type = "email"\n'
        'payload = {to = "ada@example.com", subject = "hi", sujbect = "typo"}\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "taskd", "serve", "--config", str(toml)],
        env=os.environ
        | {"PYTHONPATH": str(REPO), "TASKD_DATA_DIR": str(tmp_path), "TASKD_PORT": str(free_port())}
        | {"TASKD_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("taskd: config: schedule[0].payload.sujbect:")
    assert "Traceback" not in result.stderr


def test_a_node_whose_scheduler_fails_exits_instead_of_hanging(
    tmp_path: Path, redis_url: str
) -> None:
    """When one part of a node fails (here the scheduler, on a cron no date matches,
    given by Python code past the config check), the node shuts down and exits with the
    error; it used to keep serving HTTP with its lease loop still running, and ignore the
    first SIGTERM."""
    script = (
        "import asyncio, dataclasses, os\n"
        "from taskd import config\n"
        "from taskd.config.schedule import Schedule\n"
        "from taskd.daemon.root import Daemon\n"
        "flags = {'redis.url': os.environ['URL'], 'server.port': int(os.environ['PORT']),\n"
        "         'workers.count': 2}\n"
        "settings = config.load(None, os.environ, flags)\n"
        "never = Schedule('never', 'email', {'to': 'a@b.c', 'subject': 'x'},\n"
        "                 cron='0 0 31 2 *')\n"
        "settings = dataclasses.replace(settings, schedules=(never,))\n"
        "asyncio.run(Daemon(settings).run())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ
        | {"PYTHONPATH": str(REPO), "TASKD_DATA_DIR": str(tmp_path)}
        | {"URL": redis_url, "PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "expression never matches" in result.stderr
