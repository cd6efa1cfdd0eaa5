"""Helpers shared by the HTTP tests (this module holds no tests of its own).

``serve_app`` runs the real application (real Redis, real relay) on aiohttp's test
server; ``Daemon`` runs a real ``taskd serve`` subprocess.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from taskd import config
from taskd.events import Relay, RelayConfig
from taskd.http.app import AppState, build_app
from taskd.pool import WorkerPool
from taskd.registry import Registry, TaskType
from taskd.store import Store
from tests.procs import free_port

TASKD = Path("/work/venv/bin/taskd")
FAST_RELAY = RelayConfig(flush_interval_s=0.05, stats_interval_s=0.2, block_ms=50)


def settings(tmp: Path | str = "/tmp", **flags: str) -> config.Settings:
    """Settings from flags (dotted names, textual values), rate limit off unless given."""
    dotted = {k.replace("__", "."): v for k, v in flags.items()}
    dotted.setdefault("server.rate_limit_per_s", "0")
    return config.load(None, {"HOME": str(tmp)}, dotted)


def registry_with(**handlers: Callable[..., Any]) -> Registry:
    """The built-in types plus test handlers."""
    registry = Registry.from_modules([])
    for name, func in handlers.items():
        registry.add(
            TaskType(name=name, func=func, description=f"test type {name}", example={"n": 1})
        )
    return registry


@asynccontextmanager
async def serve_app(
    store: Store,
    *,
    registry: Registry | None = None,
    pool: WorkerPool | None = None,
    relay_config: RelayConfig = FAST_RELAY,
    **flags: str,
) -> AsyncIterator[TestClient[Any, Any]]:
    """The real app on a loopback port, its relay reading, until the block exits."""
    relay = Relay(store, relay_config)
    state = AppState(
        store=store,
        pool=pool,
        registry=registry or registry_with(),
        relay=relay,
        settings=settings(**flags),
    )
    async with TestClient(TestServer(build_app(state))) as client:
        await asyncio.wait_for(relay.ready.wait(), 10)
        yield client


class Daemon:
    """A real `taskd serve` child process (the console script), on a free port."""

    def __init__(
        self, data_dir: Path, redis_url: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "daemon.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(TASKD),
                "serve",
                "--redis-url",
                redis_url,
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                *args,
            ],
            env=os.environ | {"TASKD_LOG_FORMAT": "json"} | (env or {}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parent.parent,
        )

    @property
    def url(self) -> str:
        """Base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, timeout_s: float = 20.0) -> None:
        """Poll /readyz until it answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"taskd exited {self.proc.returncode}: {self.output()}")
            if await asyncio.to_thread(self._ready_now):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"taskd not ready: {self.output()}")

    def _ready_now(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except OSError:
            return False

    def output(self) -> str:
        """What it logged so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and close its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
