"""Real `taskd serve` / `taskd worker` subprocesses for tests that need separate OS processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The `taskd` console script pip installed beside this interpreter.
CONSOLE_SCRIPT = str(Path(sys.executable).parent / "taskd")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_gone(pid: int) -> bool:
    """True once the process has exited (a zombie awaiting its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class DaemonProcess:
    """One `taskd serve` child with its own port and data dir.

    ``command="worker"`` starts `taskd worker` instead, its health listener on the port.
    """

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        command: str = "serve",
        console_script: bool = False,
    ) -> None:
        """Start it in ``data_dir`` (its cwd too).

        ``console_script`` runs the installed ``taskd`` script, as a user does, with no
        PYTHONPATH; else ``python -m taskd`` with the checkout on PYTHONPATH.
        """
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = data_dir / "daemon.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        path = {} if console_script else {"PYTHONPATH": str(REPO)}
        full_env = (
            inherited
            | path
            | {"TASKD_LOG_FORMAT": "json", "TASKD_DATA_DIR": str(data_dir)}
            | (env or {})
        )
        program = [CONSOLE_SCRIPT] if console_script else [sys.executable, "-m", "taskd"]
        self._log = self.log_path.open("wb")
        port_flag = "--health-port" if command == "worker" else "--port"
        self.proc = subprocess.Popen(
            [*program, command, port_flag, str(self.port), *args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
        )

    @property
    def url(self) -> str:
        """Base URL of its HTTP server."""
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, timeout_s: float = 20.0) -> None:
        """Wait until /readyz answers 200 (or fail with the daemon's log)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.output()}")
            if await asyncio.to_thread(self._is_ready):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"daemon not ready: {self.output()}")

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except OSError:
            return False

    def output(self) -> str:
        """Everything it logged so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send a signal."""
        self.proc.send_signal(sig)

    async def wait(self, timeout_s: float = 30.0) -> int:
        """Wait for exit and return the exit code."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("daemon did not exit")
            await asyncio.sleep(0.05)
        return self.proc.returncode

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
