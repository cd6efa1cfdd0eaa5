"""Child processes of the benchmark and what /proc says about them (CPU time, RSS).

Children are started in their own session so that a worker that forks (dramatiq, rq,
taskiq) is stopped with its whole process group, by the group id we created.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def check_loopback(url: str) -> None:
    """Refuse any Redis but one on this machine: the benchmark flushes it and floods it."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return
    if parts.hostname not in _LOOPBACK:
        raise SystemExit(f"bench: refusing {parts.hostname!r}: only 127.0.0.1 is benchmarked")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (children excluded)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mb(pid: int) -> float:
    """Resident set size of one process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_env(**extra: str) -> dict[str, str]:
    """Our environment with the repo importable (bench and its handler modules)."""
    path = os.environ.get("PYTHONPATH")
    return os.environ | {"PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)} | extra


class Child:
    """One long-running child (a worker or a daemon) with its output in a log file."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(argv),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the child still runs."""
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The end of the child's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to the child's process group, SIGKILL to it after ``timeout_s``."""
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            deadline = asyncio.get_running_loop().time() + wait_s
            # A child's exit sets no Event to wait on: poll it.
            while self.alive() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):  # forked grandchildren left behind
            os.killpg(self.proc.pid, signal.SIGKILL)


def python_of(path: str | None) -> str:
    """The interpreter to run peers with (the separate bench venv when it exists)."""
    if path:
        return path
    default = REPO / ".bench-venv" / "bin" / "python"
    return str(default) if default.exists() else sys.executable
