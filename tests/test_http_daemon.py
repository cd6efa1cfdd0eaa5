"""Real `taskd serve` processes: the seed's curl calls, events across processes, startup guard."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import eventually
from tests.test_http_support import Daemon

pytestmark = pytest.mark.slow
SEED_BODY = (
    '{"name": "Test Task", "task_type": "data_processing", "priority": 5, '
    '"payload": {"records": 1000}}'
)


async def curl(*args: str) -> tuple[int, Any]:
    """Run real curl; returns (HTTP status, parsed JSON body)."""
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    body, _, status = out.decode().rpartition("\n")
    return int(status), json.loads(body) if body else None


async def test_seed_curl_calls_against_a_real_daemon(redis_url: str, tmp_path: Path) -> None:
    """The seed README's four curl commands work against `taskd serve`, and the task runs."""
    daemon = Daemon(tmp_path / "d", redis_url)
    try:
        await daemon.ready()
        base = f"http://localhost:{daemon.port}"
        status, task = await curl(
            "-X",
            "POST",
            f"{base}/api/tasks/",
            "-H",
            "Content-Type: application/json",
            "-d",
            SEED_BODY,
        )
        assert status == 201, task
        status, one = await curl(f"{base}/api/tasks/{task['id']}")
        assert status == 200
        assert one["id"] == task["id"]
        assert one["name"] == "Test Task"
        status, page = await curl(f"{base}/api/tasks/?limit=100")
        assert status == 200
        assert task["id"] in [t["id"] for t in page["tasks"]]
        status, stats = await curl(f"{base}/api/tasks/stats/overview")
        assert status == 200
        assert stats["total"] >= 1

        async def completed() -> bool:
            _, now = await curl(f"{base}/api/tasks/{task['id']}")
            return bool(now["status"] == "completed")

        await eventually(completed, timeout_s=20)
    finally:
        daemon.close()


async def test_client_on_one_daemon_sees_tasks_run_by_another(
    redis_url: str, tmp_path: Path, queue: str
) -> None:
    """Two daemons share one Redis: a WebSocket on A sees B run a task A never touches."""
    a = Daemon(tmp_path / "a", redis_url, "--queues", f"{queue}-a")
    b = Daemon(tmp_path / "b", redis_url, "--queues", queue)
    try:
        await asyncio.gather(a.ready(), b.ready())
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{a.url}/ws") as ws:
            first = json.loads((await ws.receive(timeout=10)).data)
            assert first["type"] == "snapshot"
            reply = await session.post(
                f"{a.url}/api/tasks",
                json={
                    "task_type": "email",
                    "queue": queue,
                    "payload": {"to": "someone@example.com", "subject": "hi", "body": "x"},
                },
            )
            task_id = (await reply.json())["id"]
            worker = None
            while worker is None:
                message = json.loads((await ws.receive(timeout=15)).data)
                for event in message.get("events", []):
                    if event["task"]["id"] == task_id and event["task"]["status"] == "completed":
                        worker = event["task"]["worker"]
        assert f":{b.proc.pid}:" in worker
    finally:
        a.close()
        b.close()


async def test_non_loopback_without_tokens_refuses_to_start(redis_url: str, tmp_path: Path) -> None:
    """Bound beyond loopback with no tokens, taskd exits and says how to fix it; with
    TASKD_ALLOW_ANONYMOUS=1 it starts."""
    refused = Daemon(tmp_path / "r", redis_url, "--host", "0.0.0.0")
    try:
        assert await asyncio.wait_for(asyncio.to_thread(refused.proc.wait), 20) == 1
        output = refused.output()
        assert "auth.allow_anonymous" in output
        assert "TASKD_AUTH_TOKENS" in output
    finally:
        refused.close()
    allowed = Daemon(
        tmp_path / "o", redis_url, "--host", "0.0.0.0", env={"TASKD_ALLOW_ANONYMOUS": "1"}
    )
    try:
        await allowed.ready()
    finally:
        allowed.close()


async def test_short_token_on_a_public_bind_refuses_to_start(
    redis_url: str, tmp_path: Path
) -> None:
    """TASKD_AUTH_TOKENS=a beyond loopback stops startup with a message about its length."""
    refused = Daemon(tmp_path / "w", redis_url, "--host", "0.0.0.0", env={"TASKD_AUTH_TOKENS": "a"})
    try:
        assert await asyncio.wait_for(asyncio.to_thread(refused.proc.wait), 20) == 1
        output = refused.output()
        assert "shorter than 16" in output
        assert "TASKD_AUTH_TOKENS=a" not in output
    finally:
        refused.close()
