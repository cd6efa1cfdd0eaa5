"""The composition root of ``taskd serve`` and ``taskd worker``: builds everything, owns
startup, shutdown, signals.

Startup: embedded Redis (when no URL) -> store -> handlers -> HTTP listener -> pool and
supervisor. Shutdown (SIGTERM/SIGINT): stop fetching, let running tasks finish within the
grace period, hand the rest back, close HTTP, then Redis. A second signal exits at once.

The two roles share all of it. ``serve`` listens with the API, WebSocket and dashboard;
with ``workers.count = 0`` it runs no pool (an API-only node). ``worker`` runs the pool
with no API, optionally a health listener (``server.health_port``), and never starts an
embedded Redis: it joins the one a local ``serve`` runs, or the configured URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from enum import StrEnum
from pathlib import Path

import structlog
from aiohttp import web

from taskd.client import embedded_url_file, resolve_redis_url
from taskd.config import Settings, mask_url
from taskd.daemon.heap import freeze_startup_heap
from taskd.daemon.looplag import LoopLag
from taskd.daemon.notify import Notifier
from taskd.embedded import EmbeddedRedis, find_server_binary
from taskd.engine.known import KnownTypes
from taskd.engine.pool import PoolConfig, WorkerPool, consumer_name
from taskd.engine.registry import Registry
from taskd.engine.relay import Relay
from taskd.engine.scheduler import Scheduler
from taskd.engine.supervisor import Supervisor, SupervisorConfig
from taskd.errors import ConfigError, RedisUnavailable
from taskd.http.app import SERVICES, AppState, build_app
from taskd.http.guard import MIN_TOKEN_LEN, is_loopback, weak_tokens
from taskd.http.health import build_health_app
from taskd.http.listener import Gate, GuardedSite
from taskd.intake import check_schedules
from taskd.model import parse_rate
from taskd.store import Store

log = structlog.get_logger(__name__)
# The systemd watchdog is not fed while the loop lags more than this (a loop blocked again
# and again between pings is not healthy).
_WATCHDOG_LAG_S = 5.0


class Role(StrEnum):
    """What a node runs besides the supervisor."""

    SERVE = "serve"  # HTTP API + dashboard, and a worker pool unless workers.count = 0
    WORKER = "worker"  # a worker pool; HTTP only for health, on server.health_port


class Daemon:
    """One taskd node: HTTP API and/or worker pool, and the supervisor, in one event loop."""

    def __init__(
        self, settings: Settings, registry: Registry | None = None, role: Role = Role.SERVE
    ) -> None:
        self.settings = settings
        self.role = role
        self.registry = registry or Registry.from_modules(
            settings.workers.handlers, settings=settings
        )
        check_schedules(self.registry, settings, settings.schedules)
        self.stop = asyncio.Event()
        self.embedded: EmbeddedRedis | None = None
        self.store: Store | None = None
        self.pool: WorkerPool | None = None
        self.port: int | None = None

    async def run(self) -> None:
        """Run until a signal (or ``stop``) ends it; release everything on the way out."""
        self._install_signals()
        runner: web.AppRunner | None = None
        try:
            self._check_role()
            self._check_exposure()
            url = await self._start_redis()
            self.store = store = await self._connect(url)
            if store is None:
                return
            consumer = consumer_name()
            if self.settings.workers.count > 0:
                self.pool = WorkerPool(
                    store, self.registry, consumer, self._pool_config(), self.settings
                )
            supervisor = Supervisor(store, consumer, self._supervisor_config())
            for queue in self.pool.fetcher.queue_names() if self.pool else ():
                await store.ensure_queue(queue)
            runner = await self._start_http(store, self.pool)
            lag = LoopLag(running=self.pool.running_handlers if self.pool else tuple)
            if runner is not None:
                lag.expose(runner.app[SERVICES].metrics.registry)
            self._log_started(url, consumer)
            freeze_startup_heap()  # full collections then skip what lives as long as we do
            notifier = Notifier(os.environ)
            notifier.ready(self._status_line())
            async with asyncio.TaskGroup() as group:
                parts = [
                    lag.run(self.stop),
                    notifier.serve(self.stop, lambda: lag.healthy(_WATCHDOG_LAG_S)),
                    supervisor.run(self.stop),
                    self._scheduler(store).run(self.stop),
                ]
                if self.pool is not None:
                    parts.append(self.pool.run(self.stop))
                for part in parts:
                    group.create_task(part).add_done_callback(self._stop_if_failed)
            log.info("taskd_stopped")
        finally:
            if runner is not None:
                await runner.cleanup()
            if self.store is not None:
                await self.store.close()
            await self._stop_redis()

    def _check_role(self) -> None:
        """A worker node without workers would do nothing: refuse it before starting."""
        if self.role is Role.WORKER and self.settings.workers.count < 1:
            raise ConfigError(
                "workers.count",
                "a worker node needs at least 1 worker; for a node without workers "
                "run `taskd serve --workers 0`",
            )

    def _log_started(self, url: str, consumer: str) -> None:
        listen = f"http://{self.settings.server.host}:{self.port}" if self.port else None
        log.info(
            "taskd_started",
            role=self.role.value,
            listen=listen,
            redis=self._describe_redis(url),
            workers=self.settings.workers.count,
            queues=list(self.settings.workers.queues) if self.pool else [],
            task_types=[t.name for t in self.registry],
            consumer=consumer,
        )

    def _status_line(self) -> str:
        workers = f"{self.settings.workers.count} workers"
        if self.role is Role.WORKER:
            health = f", health on port {self.port}" if self.port else ""
            return f"worker node, {workers}{health}"
        return f"serving on port {self.port}, {workers}"

    def _pool_config(self) -> PoolConfig:
        w, t = self.settings.workers, self.settings.tasks
        return PoolConfig(
            queues=w.queues,
            rate_limits=tuple(parse_rate(spec) for spec in w.rate_limits),
            concurrency=w.count,
            prefetch=w.prefetch or w.count,
            lease_s=t.lease_s,
            backoff_base_s=t.backoff_base_s,
            backoff_max_s=t.backoff_max_s,
            progress_interval_s=t.progress_interval_s,
            shutdown_grace_s=self.settings.server.shutdown_grace_s,
        )

    def _scheduler(self, store: Store) -> Scheduler:
        t = self.settings.tasks
        return Scheduler(
            store, self.settings.schedules, max_retries=t.max_retries, timeout_s=t.timeout_s
        )

    def _supervisor_config(self) -> SupervisorConfig:
        t = self.settings.tasks
        return SupervisorConfig(
            lease_s=t.lease_s, sweep_interval_s=t.sweep_interval_s, retention_s=t.retention_s
        )

    async def _start_redis(self) -> str:
        if self.settings.redis.url:
            return self.settings.redis.url
        if self.role is Role.WORKER:
            # A worker node never owns Redis: it joins the embedded server of a `taskd
            # serve` sharing its data dir (as taskd.Client() does), else says what to set.
            return resolve_redis_url(self.settings)
        binary = find_server_binary(self.settings.redis.server_bin or None)
        embedded = EmbeddedRedis(self.settings.data_dir / "redis", binary=binary)
        url = await embedded.start()
        # Ours only once started: a start refused because another daemon's server runs
        # in this data dir must leave that daemon's url file alone on the way out.
        self.embedded = embedded
        _write_private(embedded_url_file(self.settings.data_dir), url)
        return url

    async def _stop_redis(self) -> None:
        if self.embedded is None:
            return
        with contextlib.suppress(FileNotFoundError):
            embedded_url_file(self.settings.data_dir).unlink()
        await self.embedded.stop()

    def _check_exposure(self) -> None:
        """Refuse an open API on a non-loopback address, before starting anything.

        A worker's health listener serves only the paths that are public on every node
        (health, readiness, metrics), so it may listen anywhere.
        """
        if self.role is Role.WORKER:
            return
        host, auth = self.settings.server.host, self.settings.auth
        if not (auth.tokens or auth.read_tokens or auth.allow_anonymous or is_loopback(host)):
            raise ConfigError(
                "server.host",
                f"refusing to listen on {host} without authentication: anyone who can "
                "reach it could submit and cancel tasks. Set auth.tokens (TASKD_AUTH_TOKENS), "
                "or set auth.allow_anonymous = true (TASKD_ALLOW_ANONYMOUS=1) to run it open",
            )
        if weak := weak_tokens(auth):
            problem = (
                f"{' and '.join(weak)} hold a token shorter than {MIN_TOKEN_LEN} characters, "
                "which can be guessed; use e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`"
            )
            if not is_loopback(host):
                raise ConfigError(weak[0], f"refusing to listen on {host}: {problem}")
            log.warning("weak_token_configured", problem=problem)

    async def _connect(self, url: str) -> Store | None:
        """Connect to Redis, waiting (with back-off) while it is not up yet.

        A daemon started before its Redis (a reboot, a compose file) waits instead of
        exiting; wrong credentials or a too-old server still stop it with one line.
        Returns None when a signal arrives while waiting.
        """
        delay = 0.2
        while True:
            try:
                return await Store.connect(url, cluster=self.settings.redis.cluster)
            except RedisUnavailable as exc:
                log.warning(
                    "redis_unavailable_waiting",
                    redis=mask_url(url),
                    error=str(exc),
                    retry_in_s=delay,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=delay)
            if self.stop.is_set():
                return None
            delay = min(delay * 2, 5.0)

    async def _start_http(self, store: Store, pool: WorkerPool | None) -> web.AppRunner | None:
        """The API listener (serve), the health listener (worker with a port), or none."""
        server = self.settings.server
        port = server.port if self.role is Role.SERVE else server.health_port
        if self.role is Role.WORKER and not port:
            return None
        state = AppState(
            store=store,
            pool=pool,
            registry=self.registry,
            relay=Relay(store),
            settings=self.settings,
            known_types=KnownTypes(store, (t.name for t in self.registry)),
        )
        app = build_app(state) if self.role is Role.SERVE else build_health_app(state)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        gate = Gate(server.max_connections, server.header_timeout_s)
        site = GuardedSite(runner, server.host, port, gate)
        try:
            await site.start()
        except OSError as exc:  # taken port, unknown address: one line, not a traceback
            await runner.cleanup()
            key = "server.port" if self.role is Role.SERVE else "server.health_port"
            flag = "--port or TASKD_PORT" if self.role is Role.SERVE else "--health-port"
            reason = (
                f"cannot listen on {server.host}:{port}: {exc.strerror} (is another taskd"
                f" running there? choose another port with {flag})"
            )
            raise ConfigError(key, reason) from exc
        self.port = site.port
        return runner

    def _describe_redis(self, url: str) -> str:
        if self.embedded is not None:
            version = self.embedded.version
            return f"embedded {version[0]} {'.'.join(map(str, version[1]))} at {url}"
        return mask_url(url)

    def _stop_if_failed(self, part: asyncio.Task[None]) -> None:
        """A part that failed ends the node, through the ordinary shutdown: the task group
        cancels the other parts once, but a cancel that lands inside a Redis call can be
        swallowed by redis-py, and a loop that lost it would run on (and the group wait for
        it) until ``stop``. Setting ``stop`` ends every loop however the cancel fared."""
        if not part.cancelled() and part.exception() is not None:
            self.stop.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            log.warning("second_signal_exiting_now", signal=sig.name)
            os._exit(128 + sig.value)
        log.info("shutdown_requested", signal=sig.name)
        self.stop.set()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text + "\n")
    path.chmod(0o600)
