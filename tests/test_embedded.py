"""The managed redis/valkey child: finding it, running it, and never leaving it behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from taskd.embedded import EmbeddedRedis, check_version, find_server_binary, server_version
from taskd.errors import EmbeddedServerError

# Started by the orphan-guard test in its own interpreter, so it can be SIGKILLed.
_OWNER = """
import asyncio, sys
from pathlib import Path
import structlog
import taskd.embedded as embedded

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
embedded._GUARD = sys.argv[2]

async def main() -> None:
    server = embedded.EmbeddedRedis(Path(sys.argv[1]))
    await server.start()
    print(server.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # An orphan's corpse waits for whichever init adopted it to reap it; dead all the same.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _socket_left(url: str) -> bool:
    return Path(urlsplit(url).path).exists()


def _wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not _gone(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _fake_server(directory: Path, version_line: str, body: str) -> Path:
    """Write a shell script that answers --version with ``version_line`` and runs ``body``."""
    directory.mkdir(parents=True, exist_ok=True)
    fake = directory / "redis-server"
    fake.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{version_line}"; exit 0; fi\n{body}\n'
    )
    fake.chmod(0o755)
    return fake


async def _resp(url: str, *args: str) -> bytes:
    """Send one command as raw RESP; return a simple reply's line or a bulk reply's value."""
    target = urlsplit(url)
    async with asyncio.timeout(5):
        if target.scheme == "unix":
            reader, writer = await asyncio.open_unix_connection(target.path)
        else:
            reader, writer = await asyncio.open_connection(target.hostname, target.port)
        try:
            parts = [a.encode() for a in args]
            writer.write(b"*%d\r\n" % len(parts))
            writer.write(b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            await writer.drain()
            line = await reader.readline()
            if line.startswith(b"$") and line != b"$-1\r\n":
                return (await reader.readexactly(int(line[1:]) + 2))[:-2]
            return line.rstrip(b"\r\n")
        finally:
            writer.close()
            await writer.wait_closed()


def test_find_server_binary_finds_a_supported_server() -> None:
    """Some redis/valkey is found, runs, and is new enough."""
    binary = find_server_binary()
    assert os.access(binary, os.X_OK)
    flavour, version = server_version(binary)
    check_version(flavour, version)


@pytest.mark.parametrize(
    ("flavour", "version", "shown", "minimum"),
    [("redis", (6, 2, 14), "6.2.14", "7.0.0"), ("valkey", (7, 0, 0), "7.0.0", "7.2.0")],
)
def test_check_version_refuses_old_servers(
    flavour: str, version: tuple[int, int, int], shown: str, minimum: str
) -> None:
    """Too-old servers are refused with a message naming their version and the minimum."""
    with pytest.raises(EmbeddedServerError, match=rf"{flavour} {shown} is too old.*>= {minimum}"):
        check_version(flavour, version)


@pytest.mark.parametrize(("flavour", "version"), [("redis", (7, 0, 0)), ("valkey", (8, 1, 0))])
def test_check_version_accepts_supported_servers(
    flavour: str, version: tuple[int, int, int]
) -> None:
    """redis 7.0 and valkey 8.1 are accepted."""
    check_version(flavour, version)


def test_configured_missing_binary_is_an_error(tmp_path: Path) -> None:
    """A server_bin that does not exist is reported by its path."""
    missing = tmp_path / "nowhere" / "redis-server"
    with pytest.raises(EmbeddedServerError, match=re.escape(str(missing))):
        find_server_binary(str(missing))


def test_too_old_server_on_path_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A redis 6 first on PATH is passed over for the next candidate."""
    old = _fake_server(tmp_path / "bin", "Redis server v=6.2.14 sha=0", "exit 1")
    monkeypatch.setenv("PATH", f"{old.parent}{os.pathsep}{os.environ['PATH']}")
    found = find_server_binary()
    assert found != old
    check_version(*server_version(found))


def test_too_old_configured_server_is_an_error(tmp_path: Path) -> None:
    """A configured server_bin that is too old is refused, not skipped."""
    old = _fake_server(tmp_path / "bin", "Redis server v=6.2.14 sha=0", "exit 1")
    with pytest.raises(EmbeddedServerError, match=r"redis 6\.2\.14 is too old"):
        find_server_binary(str(old))


async def test_unix_socket_server_answers_and_persists(tmp_path: Path) -> None:
    """The default server listens on a unix socket, writes an AOF and stops without trace."""
    data_dir = tmp_path / "redis"
    server = EmbeddedRedis(data_dir)
    try:
        url = await server.start()
        pid = server.pid
        assert pid is not None
        assert url.startswith("unix://")
        assert await _resp(url, "PING") == b"+PONG"
        assert await _resp(url, "SET", "k", "v") == b"+OK"
        aof_dir = data_dir / "appendonlydir"
        deadline = time.monotonic() + 3
        while not any(b"SET" in f.read_bytes() for f in aof_dir.glob("*.aof")):
            assert time.monotonic() < deadline, "the write never reached the AOF"
            await asyncio.sleep(0.02)
    finally:
        await server.stop()
    assert server.pid is None
    assert _wait_gone(pid)
    assert not _socket_left(url)


async def test_tcp_server_on_a_free_port(tmp_path: Path) -> None:
    """With unix_socket=False the server listens on 127.0.0.1 on a free port."""
    server = EmbeddedRedis(tmp_path / "redis", unix_socket=False)
    try:
        url = await server.start()
        pid = server.pid
        assert pid is not None
        assert re.fullmatch(r"redis://127\.0\.0\.1:\d+", url)
        assert await _resp(url, "PING") == b"+PONG"
    finally:
        await server.stop()
    assert _wait_gone(pid)


async def test_data_survives_a_restart(tmp_path: Path) -> None:
    """A key written before stop() is read back by a new server on the same data dir."""
    async with EmbeddedRedis(tmp_path / "redis") as first:
        assert await _resp(first.url, "SET", "k", "v") == b"+OK"
    async with EmbeddedRedis(tmp_path / "redis") as second:
        assert await _resp(second.url, "GET", "k") == b"v"


async def test_stop_is_idempotent(tmp_path: Path) -> None:
    """stop() after stop() (here: after the context manager's) does nothing."""
    async with EmbeddedRedis(tmp_path / "redis") as server:
        pass
    await server.stop()
    assert server.pid is None


async def test_long_data_dir_puts_the_socket_in_a_temp_dir(tmp_path: Path) -> None:
    """A data dir too long for sun_path gets its socket under /tmp, removed on stop."""
    server = EmbeddedRedis(tmp_path / ("d" * 120) / "redis")
    try:
        url = await server.start()
        assert url.startswith("unix:///tmp/taskd-")
        assert await _resp(url, "PING") == b"+PONG"
    finally:
        await server.stop()
    assert not Path(urlsplit(url).path).parent.exists()


async def test_stale_socket_does_not_block_a_start(tmp_path: Path) -> None:
    """A socket file left by a killed run is cleared before starting."""
    data_dir = tmp_path / "redis"
    data_dir.mkdir()
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(data_dir / "redis.sock"))
    async with EmbeddedRedis(data_dir) as server:
        assert await _resp(server.url, "PING") == b"+PONG"


async def test_second_server_on_a_live_data_dir_is_refused(tmp_path: Path) -> None:
    """Starting on a data dir whose server still runs names that server's pid."""
    async with EmbeddedRedis(tmp_path / "redis") as first:
        second = EmbeddedRedis(tmp_path / "redis")
        with pytest.raises(EmbeddedServerError, match=rf"pid {first.pid}\) is still running"):
            await second.start()
        assert await _resp(first.url, "PING") == b"+PONG"


@pytest.mark.parametrize("guard", ["pdeathsig", "watchdog"])
def test_server_dies_with_a_sigkilled_owner(tmp_path: Path, guard: str) -> None:
    """When the owning process is SIGKILLed its server exits within seconds."""
    if guard == "pdeathsig" and sys.platform != "linux":
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path / "redis"), guard], stdout=subprocess.PIPE
    )
    server_pid = 0
    try:
        assert owner.stdout is not None
        with owner.stdout:
            line = owner.stdout.readline()
        assert line.strip().isdigit(), "the owner did not report a server pid"
        server_pid = int(line)
        assert not _gone(server_pid)
        owner.kill()
        owner.wait(timeout=5)
        assert _wait_gone(server_pid), "the server outlived its owner"
    finally:
        owner.kill()
        owner.wait(timeout=5)
        if server_pid and not _gone(server_pid):
            os.kill(server_pid, signal.SIGKILL)


async def test_server_exiting_at_once_is_reported(tmp_path: Path) -> None:
    """A binary that exits during startup gives an error quoting its output."""
    fake = _fake_server(
        tmp_path / "bin", "Redis server v=7.2.0 sha=0", "echo 'fatal: cannot start' >&2; exit 1"
    )
    server = EmbeddedRedis(tmp_path / "redis", binary=fake)
    with pytest.raises(EmbeddedServerError, match=r"exited with code 1(.|\n)*fatal: cannot start"):
        await server.start()
    assert server.pid is None


async def test_server_never_ready_times_out(tmp_path: Path) -> None:
    """A server that never answers PING fails start() at the deadline and is killed."""
    fake = _fake_server(tmp_path / "bin", "Redis server v=7.2.0 sha=0", "echo $$; exec sleep 30")
    server = EmbeddedRedis(tmp_path / "redis", binary=fake)
    with pytest.raises(EmbeddedServerError, match=r"not ready after 0\.3s"):
        await server.start(timeout_s=0.3)
    assert server.pid is None
    pid = int((tmp_path / "redis" / "server.log").read_text().split()[0])
    assert _wait_gone(pid)
