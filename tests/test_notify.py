"""systemd notification: the protocol pieces, and `taskd serve` under a fake NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from taskd.daemon.notify import Notifier, socket_address, watchdog_interval_s
from tests.conftest import eventually
from tests.procs import DaemonProcess


class Listener:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name  # the NOTIFY_SOCKET value
        self.messages: list[tuple[float, list[str]]] = []

    async def collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append((time.monotonic(), data.decode().split("\n")))

    def lines(self) -> list[str]:
        return [line for _, msg in self.messages for line in msg]

    async def wait_for(self, line: str, timeout_s: float = 20.0) -> float:
        """When the first message holding ``line`` arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, msg in self.messages:
                if line in msg:
                    return at
            await asyncio.sleep(0.01)
        raise AssertionError(f"{line} never arrived; got {self.lines()}")


@pytest.fixture
def notify_dir() -> Iterator[Path]:
    """A short directory for a socket path (sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="taskd-notify-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture
async def listener(notify_dir: Path) -> AsyncIterator[Listener]:
    """A bound datagram socket collecting whatever is sent to it."""
    path = notify_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    found = Listener(sock, str(path))
    job = asyncio.create_task(found.collect())
    yield found
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job
    sock.close()


def test_socket_address_forms() -> None:
    """Paths are used as given, '@name' is the abstract namespace, anything else is refused."""
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@taskd") == "\0taskd"
    assert socket_address("vsock:2:1234") is None
    assert socket_address("") is None


def test_watchdog_interval_is_half_and_only_for_us() -> None:
    """Pings come at half of WATCHDOG_USEC, and only when WATCHDOG_PID is ours (or unset)."""
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42"}, 42) == 0.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval_s({}, 42) is None


def test_without_notify_socket_nothing_is_sent() -> None:
    """Outside systemd the notifier is disabled and every call is a no-op."""
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_s is None
    assert notifier.ready("up") is False


async def test_abstract_socket_receives_ready() -> None:
    """READY=1 with STATUS and MAINPID reaches an abstract-namespace socket."""
    name = f"@taskd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:])
        notifier = Notifier({"NOTIFY_SOCKET": name})
        assert notifier.ready("serving")
        lines = sock.recv(4096).decode().split("\n")
    assert lines == ["READY=1", "STATUS=serving", f"MAINPID={os.getpid()}"]


async def test_vanished_socket_is_reported_once_and_never_raises(notify_dir: Path) -> None:
    """A socket nobody listens on makes send() return False without raising."""
    notifier = Notifier({"NOTIFY_SOCKET": str(notify_dir / "gone.sock")})
    assert notifier.send("WATCHDOG=1") is False
    assert notifier.send("WATCHDOG=1") is False


@pytest.mark.slow
@pytest.mark.parametrize(("command", "status"), [("serve", "serving"), ("worker", "worker")])
async def test_node_notifies_ready_watchdog_and_stopping(
    listener: Listener, redis_url: str, tmp_path: Path, command: str, status: str
) -> None:
    """`taskd serve` and `taskd worker` send READY=1 once their port (the worker's health
    port) is bound, WATCHDOG=1 pings, then STOPPING=1."""
    env = {"NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": "400000"}
    daemon = DaemonProcess(tmp_path / "d", "--redis-url", redis_url, env=env, command=command)
    try:
        await listener.wait_for("READY=1")
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=1):
            pass  # READY=1 came after the port was bound
        first = listener.messages[0][1]
        assert first[0] == "READY=1"
        assert f"MAINPID={daemon.proc.pid}" in first
        assert any(line.startswith(f"STATUS={status}") for line in first)

        await eventually(lambda: asyncio.sleep(0, result=listener.lines().count("WATCHDOG=1") >= 2))
        daemon.kill(signal.SIGTERM)
        await listener.wait_for("STOPPING=1")
        assert await daemon.wait() == 0
    finally:
        daemon.close()
    ready_at = next(at for at, msg in listener.messages if "READY=1" in msg)
    pings = [at for at, msg in listener.messages if "WATCHDOG=1" in msg]
    assert all(at >= ready_at for at in pings)
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 0.4  # within WATCHDOG_USEC, at about half of it
