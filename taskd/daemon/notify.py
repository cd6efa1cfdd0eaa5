"""systemd's readiness and watchdog protocol (``sd_notify``), in the standard library only.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a datagram socket to which the
service sends newline-separated ``KEY=value`` lines: ``READY=1`` once it serves,
``STATUS=…`` for ``systemctl status``, ``STOPPING=1`` when it begins to shut down, and,
with ``WatchdogSec=``, ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` microseconds or it
is killed and restarted. Pings are sent from the event loop itself, so a blocked loop stops
them. Without ``$NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


def socket_address(value: str) -> str | None:
    """The AF_UNIX address of ``$NOTIFY_SOCKET``: a path, or ``@name`` (abstract)."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def watchdog_interval_s(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``) when the watchdog is ours."""
    usec, owner = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None  # meant for another process (our parent, typically)
    return int(usec) / 2_000_000


class Notifier:
    """Sends sd_notify messages; a no-op when not run by systemd."""

    def __init__(self, env: Mapping[str, str], pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = socket_address(raw)
        if raw and self.address is None:
            log.warning("notify_socket_unsupported", notify_socket=raw)
        self.watchdog_s = watchdog_interval_s(env, self.pid) if self.address else None
        self._failed = False

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; True if it was delivered."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failed:  # say it once, not at every watchdog ping
                log.warning("notify_failed", error=str(exc), notify_socket=self.address)
                self._failed = True
            return False
        return True

    def ready(self, status: str) -> bool:
        """Tell systemd the service is up."""
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={self.pid}")

    def status(self, status: str) -> bool:
        """Update the one-line status shown by ``systemctl status``."""
        return self.send(f"STATUS={status}")

    def stopping(self, status: str = "shutting down") -> bool:
        """Tell systemd the service is stopping (it then waits up to TimeoutStopSec)."""
        return self.send("STOPPING=1", f"STATUS={status}")

    async def serve(self, stop: asyncio.Event, healthy: Callable[[], bool]) -> None:
        """Ping the watchdog while ``healthy()``, until ``stop``; then send STOPPING=1."""
        if self.watchdog_s is not None:
            interval = self.watchdog_s
            while not stop.is_set():
                if healthy():
                    self.send("WATCHDOG=1")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
        else:
            await stop.wait()
        self.stopping()
