"""Typed access to taskd's Redis data: the only module that imports redis.

Every multi-step state change is one Lua script from ``taskd/scripts`` (loaded once,
called by EVALSHA); script error codes become :mod:`taskd.errors` exceptions here, and
connection problems become :class:`RedisUnavailable`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import unquote

import hiredis
import orjson
import redis.asyncio as aioredis
import redis.exceptions as rexc
import structlog
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from taskd import keys
from taskd.errors import RedisUnavailable, StaleAttempt, TaskdError, TaskNotFound, WrongState
from taskd.keys import GROUP, Keys
from taskd.model import STATUS_NAMES, TASK_ID, Status, Task, TaskSpec
from taskd.paging import Cursor, Entry, advance, order

log = structlog.get_logger(__name__)

MIN_VERSIONS = {"redis": (7, 0, 0), "valkey": (7, 2, 0)}
SCRIPT_NAMES = (
    "enqueue",
    "fetch",
    "complete",
    "fail",
    "progress",
    "cancel",
    "retry",
    "promote",
    "reclaim",
    "release",
    "expire",
    "trim",
    "purge",
    "schedule_mark",
)


def load_script_source(name: str) -> str:
    """A script's text with the shared prelude in front (Lua has no includes)."""
    folder = resources.files("taskd") / "scripts"
    prelude = (folder / "_lib.lua").read_text()
    return prelude + "\n" + (folder / f"{name}.lua").read_text()


def translate(exc: Exception) -> Exception:
    """Map a redis-py exception to a taskd one (script codes, connection loss)."""
    if isinstance(exc, rexc.ResponseError):
        text = str(exc)
        code, _, detail = text.partition(" ")
        if code == "TASKD_STALE":
            task_id, _, attempt = detail.partition(" ")
            return StaleAttempt(task_id, int(attempt or 0))
        if code == "TASKD_NOTFOUND":
            return TaskNotFound(detail.rsplit(":", 1)[-1])
        return exc
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return TaskdError(f"redis refused the credentials: {exc}")
    if _tls_failure(exc):  # waiting would not help: the certificate will not change
        return TaskdError(f"TLS connection to redis failed: {exc}")
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError):
        return RedisUnavailable(f"redis unavailable: {type(exc).__name__}")
    return exc


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Raise taskd exceptions instead of redis-py ones inside the block."""
    try:
        yield
    except (rexc.RedisError, OSError) as exc:
        raise translate(exc) from exc


class _HiredisPacking:
    """Pack commands with hiredis (C) instead of redis-py's pure-Python async packer.

    Packing script arguments dominated the client's CPU profile of batch submits.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


def _fast_packing(client: aioredis.Redis) -> aioredis.Redis:
    pool = client.connection_pool
    base = pool.connection_class
    if not issubclass(base, _HiredisPacking):
        pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return client


COMMON_OPTIONS: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": 1}


def _clients(url: str, cluster: bool) -> tuple[Any, Any, list[Any]]:
    """A command client (5 s socket timeout), a client for blocking reads, and any other
    clients to close with them."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme.endswith("+cluster") or cluster:
        first, _, more = f"{scheme.removesuffix('+cluster')}://{rest}".partition(",")
        nodes = [ClusterNode(host, port) for host, port in _host_ports(more)] if more else None
        return (
            RedisCluster.from_url(first, startup_nodes=nodes, socket_timeout=5, **COMMON_OPTIONS),
            RedisCluster.from_url(first, startup_nodes=nodes, **COMMON_OPTIONS),
            [],
        )
    if scheme.endswith("+sentinel"):
        return _sentinel_clients(scheme.removesuffix("+sentinel"), rest)
    common = COMMON_OPTIONS | {"health_check_interval": 15}
    return (
        _fast_packing(aioredis.Redis.from_url(url, socket_timeout=5, **common)),
        _fast_packing(aioredis.Redis.from_url(url, **common)),
        [],
    )


def _host_ports(text: str) -> list[tuple[str, int]]:
    found = []
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        found.append((host.strip("[]"), int(port)))
    return found


def _sentinel_clients(scheme: str, rest: str) -> tuple[Any, Any, list[Any]]:
    """``[user:password@]host:port,host:port/master[/db]`` via the listed sentinels."""
    auth, _, where = rest.rpartition("@")
    hosts, _, path = where.partition("/")
    master, _, db = path.partition("/")
    if not master:
        raise TaskdError("redis+sentinel:// URLs name the master: host:port,.../mymaster")
    username, _, password = auth.partition(":") if auth else ("", "", "")
    options: dict[str, Any] = COMMON_OPTIONS | {
        "db": int(db or 0),
        "username": unquote(username) or None,
        "password": unquote(password) or None,
        "ssl": scheme == "rediss",
    }
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        _host_ports(hosts), socket_connect_timeout=1, socket_timeout=2
    )
    return (
        _fast_packing(sentinel.master_for(master, socket_timeout=5, **options)),
        _fast_packing(sentinel.master_for(master, **options)),
        list(sentinel.sentinels),
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    """Tasks one fetch started, and whether their queue is paused."""

    tasks: list[Task]
    paused: bool


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """What one reclaim sweep over one stream did."""

    cursor: str
    requeued: list[str]
    failed: list[str]
    deleted: list[str]


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a queue's events stream."""

    queue: str
    event_id: str
    kind: str
    ts: int
    task: dict[str, Any]


class Store:
    """taskd's operations on one Redis deployment (a client pool, scripts, key schema)."""

    def __init__(
        self,
        client: aioredis.Redis,
        blocking: aioredis.Redis,
        *,
        events_maxlen: int = 10_000,
    ) -> None:
        # redis-py's async annotations cannot express decode_responses=True (every reply is
        # typed bytes | str | Awaitable); replies are given real types at this boundary.
        self.redis: Any = client
        self._blocking: Any = blocking
        self.events_maxlen = events_maxlen
        self._scripts = {n: client.register_script(load_script_source(n)) for n in SCRIPT_NAMES}
        self._keys: dict[str, Keys] = {}
        self.cluster = False
        self._also_close: list[Any] = []  # e.g. the connections to sentinels
        self._ready_queues: set[str] = set()

    @classmethod
    async def connect(
        cls, url: str, *, cluster: bool = False, events_maxlen: int = 10_000
    ) -> Store:
        """Connect, check the server version, and return a ready store.

        ``redis://``, ``rediss://`` and ``unix://`` name one server;
        ``redis+cluster://host:port[,host:port]`` (or ``cluster=True``) a Redis Cluster;
        ``redis+sentinel://host:port[,host:port]/master`` a master found via Sentinel.
        """
        client, blocking, extra = _clients(url, cluster)
        store = cls(client, blocking, events_maxlen=events_maxlen)
        store._also_close = extra
        store.cluster = isinstance(client, RedisCluster)
        if store.cluster:  # pub/sub routing needs the slot map before the first command
            async with translated():
                await client.initialize()
                await blocking.initialize()
        try:
            await store.check_version()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close both connection pools."""
        await self.redis.aclose()
        await self._blocking.aclose()
        for client in self._also_close:
            await client.aclose()

    async def check_version(self) -> tuple[str, tuple[int, ...]]:
        """Refuse servers older than Redis 7.0 / Valkey 7.2 (XAUTOCLAIM replies)."""
        async with translated():
            info = await self.redis.info("server")
        if info and all(isinstance(v, dict) for v in info.values()):  # per cluster node
            info = min(info.values(), key=lambda i: str(i.get("redis_version", "")))
        flavour = "valkey" if "valkey_version" in info else "redis"
        raw = str(info.get("valkey_version") or info.get("redis_version", "0"))
        version = tuple(int(p) for p in raw.split(".")[:3] if p.isdigit())
        if version < MIN_VERSIONS[flavour]:
            minimum = ".".join(map(str, MIN_VERSIONS[flavour]))
            raise TaskdError(f"{flavour} {raw} is too old: taskd needs {flavour} >= {minimum}")
        return flavour, version

    async def ping(self) -> float:
        """Round-trip time to Redis in seconds."""
        started = time.perf_counter()
        async with translated():
            await self.redis.ping()
        return time.perf_counter() - started

    def keys(self, queue: str) -> Keys:
        """Key names of a queue (cached)."""
        found = self._keys.get(queue)
        if found is None:
            found = self._keys[queue] = Keys(queue)
        return found

    async def ensure_queue(self, queue: str) -> None:
        """Create the queue's streams and consumer group if missing, and register it."""
        k = self.keys(queue)
        async with translated():
            for stream in k.streams.values():
                try:
                    await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
                except rexc.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            await self.redis.sadd(keys.QUEUES, queue)
        self._ready_queues.add(queue)

    async def queues(self) -> list[str]:
        """Every queue that ever had a task, sorted."""
        async with translated():
            names = await self.redis.smembers(keys.QUEUES)
        return sorted(names)

    # -- submitting and reading tasks -------------------------------------------------

    async def submit(self, specs: Sequence[TaskSpec]) -> list[tuple[Task, bool]]:
        """Create tasks in one round trip; returns (task, created) in input order.

        ``created`` is False when a unique key already named a live task, which is
        returned instead.
        """
        by_queue: dict[str, list[int]] = {}
        for i, spec in enumerate(specs):
            by_queue.setdefault(spec.queue, []).append(i)
        for queue in by_queue:
            if queue not in self._ready_queues:
                await self.ensure_queue(queue)
        results: list[tuple[Task, bool] | None] = [None] * len(specs)
        calls: list[tuple[str, list[str], list[Any]]] = []
        async with translated():
            for queue, indexes in by_queue.items():
                k = self.keys(queue)
                script_keys = [
                    k.stats,
                    k.index,
                    k.events,
                    k.delayed,
                    k.seq,
                    k.depth,
                    *k.streams.values(),
                ]
                args: list[Any] = [self.events_maxlen, k.task_prefix]
                for i in indexes:
                    s = specs[i]
                    task_key = k.task(s.id)
                    script_keys += [task_key, k.unique(s.unique_key) if s.unique_key else task_key]
                    args += _enqueue_args(s)
                calls.append(("enqueue", script_keys, args))
            replies = await self._pipelined(calls)
        for (_queue, indexes), reply in zip(by_queue.items(), replies, strict=True):
            now = int(reply[0])
            for i, item in zip(indexes, reply[1:], strict=True):
                if item[0]:
                    results[i] = (_new_task(specs[i], item[1], item[2], item[3], now), True)
                else:
                    results[i] = (Task.from_flat(item[1]), False)
        return [r for r in results if r is not None]

    async def _pipelined(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Run script calls in one pipeline by EVALSHA alone.

        redis-py's pipelines ask SCRIPT EXISTS before every execution (a second round
        trip); instead, scripts Redis lost (a restart, SCRIPT FLUSH) are loaded again and
        only the calls that failed with NOSCRIPT are repeated (they had no effect).
        """
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(2):
            results = await self._evalsha_all([calls[i] for i in todo])
            missing = []
            for i, result in zip(todo, results, strict=True):
                if isinstance(result, rexc.NoScriptError):
                    missing.append(i)
                elif isinstance(result, Exception):
                    raise result
                else:
                    replies[i] = result
            if not missing:
                return replies
            for name in {calls[i][0] for i in missing}:
                await self.redis.script_load(self._scripts[name].script)
            todo = missing
        raise rexc.NoScriptError("scripts could not be loaded")

    async def _evalsha_all(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """EVALSHA each call, errors returned in place; one pipeline, or on Redis Cluster
        (whose pipelines refuse scripts) concurrent calls, each routed to its slot."""
        if self.cluster:
            limit = asyncio.Semaphore(32)  # bounded: each call may need its own connection

            async def one(name: str, script_keys: list[str], args: list[Any]) -> Any:
                async with limit:
                    return await self.redis.evalsha(
                        self._scripts[name].sha, len(script_keys), *script_keys, *args
                    )

            return list(
                await asyncio.gather(*(one(*call) for call in calls), return_exceptions=True)
            )
        pipe = self.redis.pipeline(transaction=False)
        for name, script_keys, args in calls:
            pipe.evalsha(self._scripts[name].sha, len(script_keys), *script_keys, *args)
        return list(await pipe.execute(raise_on_error=False))

    async def locate(self, task_id: str) -> str:
        """The queue holding a task id (ids are unique over all queues)."""
        if not TASK_ID.match(task_id):
            raise TaskNotFound(task_id)
        queues = await self.queues()
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue in queues:
                pipe.exists(self.keys(queue).task(task_id))
            found = await pipe.execute()
        for queue, exists in zip(queues, found, strict=True):
            if exists:
                return str(queue)
        raise TaskNotFound(task_id)

    async def get(self, task_id: str, queue: str | None = None) -> Task:
        """One task by id, or TaskNotFound."""
        queue = queue or await self.locate(task_id)
        async with translated():
            raw = await self.redis.hgetall(self.keys(queue).task(task_id))
        if not raw:
            raise TaskNotFound(task_id)
        return Task.from_hash(raw)

    async def get_many(self, entries: Sequence[tuple[str, str]]) -> list[Task | None]:
        """Tasks by (queue, id) in one round trip; None where a task has expired."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue, task_id in entries:
                pipe.hgetall(self.keys(queue).task(task_id))
            raws = await pipe.execute()
        return [Task.from_hash(raw) if raw else None for raw in raws]

    async def list_tasks(
        self,
        *,
        limit: int = 100,
        cursor: Cursor | None = None,
        queue: str | None = None,
        accept: Callable[[Task], bool] | None = None,
        max_scan: int = 10_000,
    ) -> tuple[list[Task], Cursor | None]:
        """Newest first over one or all queues; ``accept`` filters; returns the next cursor.

        At most ``max_scan`` index entries are read per call, so a rare filter returns a
        short page with a cursor rather than scanning everything.
        """
        queues = [queue] if queue else await self.queues()
        found: list[Task] = []
        scanned = 0
        batch = max(limit, 100)
        while len(found) < limit and scanned < max_scan:
            candidates = await self._index_slice(queues, cursor, batch)
            ordered = order(candidates, cursor)[:batch]
            if not ordered:
                return found, None
            tasks = await self.get_many([(q, i) for _, q, i in ordered])
            taken: list[Entry] = []
            for entry, task in zip(ordered, tasks, strict=True):
                taken.append(entry)
                if task is not None and (accept is None or accept(task)):
                    found.append(task)
                    if len(found) == limit:
                        break
            cursor = advance(cursor, taken)
            scanned += len(taken)
        return found, cursor

    async def _index_slice(
        self, queues: list[str], cursor: Cursor | None, batch: int
    ) -> list[Entry]:
        top = "+inf" if cursor is None else str(cursor.score)
        skip = 0 if cursor is None else cursor.skip
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.zrange(
                    self.keys(q).index,
                    top,
                    "-inf",
                    desc=True,
                    byscore=True,
                    offset=0,
                    num=batch + skip,
                    withscores=True,
                )
            replies = await pipe.execute()
        return [
            (int(score), q, member)
            for q, reply in zip(queues, replies, strict=True)
            for member, score in reply
        ]

    async def stats(self, queue: str | None = None) -> dict[str, int]:
        """Counts per status plus totals, summed over one or all queues; O(queues)."""
        queues = [queue] if queue else await self.queues()
        totals = dict.fromkeys((*STATUS_NAMES, "total", "submitted"), 0)
        totals |= {"completed_total": 0, "failed_total": 0}
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.hgetall(self.keys(q).stats)
            for raw in await pipe.execute():
                for name, value in raw.items():
                    totals[name] = totals.get(name, 0) + int(value)
        return totals

    async def cancel(self, task_id: str) -> str:
        """Cancel a task; returns 'cancelled' or 'cancelling' (running, cooperative)."""
        task = await self.get(task_id)
        k = self.keys(task.queue)
        async with translated():
            return str(
                await self._call(
                    "cancel",
                    task_id,
                    "cancel",
                    keys=[
                        k.task(task_id),
                        k.stats,
                        k.events,
                        k.finished,
                        k.delayed,
                        k.stream(task.priority),
                        k.depth,
                    ],
                    args=[self.events_maxlen, keys.CANCEL_CHANNEL],
                )
            )

    async def retry(self, task_id: str) -> Task:
        """Send a failed or cancelled task back to pending with its attempts reset."""
        task = await self.get(task_id)
        k = self.keys(task.queue)
        async with translated():
            await self._call(
                "retry",
                task_id,
                "retry",
                keys=[
                    k.task(task_id),
                    k.stats,
                    k.events,
                    k.finished,
                    k.dead,
                    k.stream(task.priority),
                    k.depth,
                ],
                args=[self.events_maxlen],
            )
        return await self.get(task_id, task.queue)

    async def _call(self, script: str, task_id: str, action: str, **kw: Any) -> Any:
        try:
            return await self._scripts[script](**kw)
        except rexc.ResponseError as exc:
            code, _, detail = str(exc).partition(" ")
            if code == "TASKD_STATE":
                raise WrongState(task_id, detail, action) from None
            raise translate(exc) from None

    # -- worker side ----------------------------------------------------------------

    async def fetch(
        self, queue: str, consumer: str, count: int, block_ms: int = 0, limits: str = ""
    ) -> list[Task]:
        """Start up to ``count`` tasks of one queue; block up to ``block_ms`` if none."""
        fetched = await self.start_ready(queue, consumer, count, limits)
        if fetched.tasks or block_ms <= 0 or fetched.paused:
            return fetched.tasks
        delivered = await self.wait_ready([queue], consumer, block_ms)
        if not delivered:
            return []
        return (await self.start_ready(queue, consumer, 0, limits, delivered[queue])).tasks

    async def start_ready(
        self,
        queue: str,
        consumer: str,
        count: int,
        limits: str = "",
        delivered: Sequence[tuple[int, str, str]] = (),
    ) -> Fetched:
        """Start up to ``count`` ready tasks (plus ``delivered`` entries) without blocking.

        ``limits`` is the queue's rate limits as fetch.lua's JSON; ``delivered`` are
        (stream position, entry id, task id) triples from :meth:`wait_ready`.
        """
        if queue not in self._ready_queues:
            await self.ensure_queue(queue)
        k = self.keys(queue)
        script_keys = [
            k.stats,
            k.events,
            k.depth,
            k.paused,
            k.ratelimit,
            k.delayed,
            *k.streams_by_urgency,
        ]
        args: list[Any] = [GROUP, consumer, count, self.events_maxlen, k.task_prefix, limits]
        for triple in delivered:
            args += triple
        try:
            async with translated():
                paused, started = await self._scripts["fetch"](keys=script_keys, args=args)
        except rexc.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ready_queues.discard(queue)  # streams vanished (flushed): recreate
            return Fetched([], False)
        return Fetched([Task.from_flat(flat) for flat in started], bool(paused))

    async def wait_ready(
        self, queues: Sequence[str], consumer: str, block_ms: int
    ) -> dict[str, list[tuple[int, str, str]]]:
        """Block until an entry arrives in any of the queues' streams (XREADGROUP BLOCK).

        Returns the entries delivered to ``consumer`` per queue, to be started with
        :meth:`start_ready`. All queues must live on one Redis node (not across a cluster).
        """
        streams: dict[str, tuple[str, int]] = {}
        for queue in queues:
            for position, stream in enumerate(self.keys(queue).streams_by_urgency, start=1):
                streams[stream] = (queue, position)
        try:
            async with translated():
                reply = await self._blocking.xreadgroup(
                    GROUP, consumer, dict.fromkeys(streams, ">"), count=1, block=block_ms
                )
        except rexc.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ready_queues.difference_update(queues)  # flushed: recreate on next start
            return {}
        delivered: dict[str, list[tuple[int, str, str]]] = {}
        for stream, entries in reply or []:
            queue, position = streams[stream]
            for sid, fields in entries:
                delivered.setdefault(queue, []).append((position, sid, fields.get("id", "")))
        return delivered

    async def complete(self, task: Task, result: Any) -> None:
        """Record success of the held attempt; StaleAttempt if it is no longer held."""
        (outcome,) = await self.complete_many([(task, orjson.dumps(result))])
        if outcome == "stale":
            raise StaleAttempt(task.id, task.attempt)
        if outcome == "missing":
            raise TaskNotFound(task.id)

    async def complete_many(self, done: Sequence[tuple[Task, bytes]]) -> list[str]:
        """Record many successes (results already JSON) in one round trip.

        Returns per task 'completed', 'stale' (attempt no longer held; nothing written)
        or 'missing'.
        """
        by_queue: dict[str, list[int]] = {}
        for i, (task, _) in enumerate(done):
            by_queue.setdefault(task.queue, []).append(i)
        outcomes = [""] * len(done)
        calls: list[tuple[str, list[str], list[Any]]] = []
        async with translated():
            for queue, indexes in by_queue.items():
                k = self.keys(queue)
                script_keys = [k.stats, k.events, k.finished]
                args: list[Any] = [GROUP, self.events_maxlen]
                for i in indexes:
                    task, result = done[i]
                    script_keys += [k.task(task.id), k.stream(task.priority)]
                    args += [task.attempt, task.sid, result]
                calls.append(("complete", script_keys, args))
            replies = await self._pipelined(calls)
        for indexes, reply in zip(by_queue.values(), replies, strict=True):
            for i, outcome in zip(indexes, reply, strict=True):
                outcomes[i] = str(outcome)
        return outcomes

    async def fail(self, task: Task, error: str, mode: str, delay_ms: int = 0) -> str:
        """Record failure of the held attempt (mode retry|fail|cancel); returns new status."""
        k = self.keys(task.queue)
        async with translated():
            return str(
                await self._scripts["fail"](
                    keys=[
                        k.task(task.id),
                        k.stream(task.priority),
                        k.stats,
                        k.events,
                        k.finished,
                        k.delayed,
                        k.dead,
                    ],
                    args=[
                        GROUP,
                        task.attempt,
                        task.sid,
                        error[:4000],
                        mode,
                        delay_ms,
                        self.events_maxlen,
                    ],
                )
            )

    async def progress(self, task: Task, percent: int, message: str) -> int:
        """Store progress; 1 stored, 2 stored and cancel requested, 0 stale."""
        k = self.keys(task.queue)
        async with translated():
            return int(
                await self._scripts["progress"](
                    keys=[k.task(task.id), k.events],
                    args=[task.attempt, task.sid, percent, message[:500], self.events_maxlen],
                )
            )

    async def release(self, task: Task) -> str:
        """Hand a held task back to its queue without using an attempt."""
        k = self.keys(task.queue)
        async with translated():
            return str(
                await self._scripts["release"](
                    keys=[
                        k.task(task.id),
                        k.stream(task.priority),
                        k.stats,
                        k.events,
                        k.finished,
                        k.depth,
                    ],
                    args=[GROUP, task.attempt, task.sid, self.events_maxlen],
                )
            )

    async def is_held(self, task: Task) -> bool:
        """True while this attempt of the task is the one processing (not reclaimed)."""
        async with translated():
            status, attempt, sid = await self.redis.hmget(
                self.keys(task.queue).task(task.id), "status", "attempt", "sid"
            )
        return bool(status == "processing" and attempt == str(task.attempt) and sid == task.sid)

    async def renew(self, consumer: str, held: Sequence[Task]) -> None:
        """Reset the idle time of held entries (XCLAIM JUSTID keeps the delivery count)."""
        by_stream: dict[str, list[str]] = {}
        for task in held:
            by_stream.setdefault(self.keys(task.queue).stream(task.priority), []).append(task.sid)
        if not by_stream:
            return
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for stream, sids in by_stream.items():
                pipe.xclaim(stream, GROUP, consumer, 0, sids, justid=True)
            await pipe.execute()

    async def heartbeat(self, consumer: str, info: dict[str, Any], ttl_s: float) -> None:
        """Announce a live consumer; its record expires if the process dies."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(keys.worker_info(consumer), orjson.dumps(info), px=int(ttl_s * 1000))
            pipe.zadd(keys.WORKERS, {consumer: int(time.time() * 1000)})
            await pipe.execute()

    async def unregister(self, consumer: str) -> None:
        """Remove a consumer's heartbeat on clean shutdown."""
        async with translated():
            await self.redis.delete(keys.worker_info(consumer))
            await self.redis.zrem(keys.WORKERS, consumer)

    async def workers(self) -> list[dict[str, Any]]:
        """Live consumers' heartbeat records; stale names are dropped from the registry."""
        async with translated():
            names = await self.redis.zrange(keys.WORKERS, 0, -1)
            if not names:
                return []
            pipe = self.redis.pipeline(transaction=False)  # keys of many slots: no MGET
            for name in names:
                pipe.get(keys.worker_info(name))
            infos = await pipe.execute()
            dead = [n for n, i in zip(names, infos, strict=True) if i is None]
            if dead:
                await self.redis.zrem(keys.WORKERS, *dead)
        return [orjson.loads(i) for i in infos if i is not None]

    def cancel_requests(self) -> CancelRequests:
        """A subscription to the ids of running tasks whose cancellation was requested."""
        return CancelRequests(self._blocking.pubsub(ignore_subscribe_messages=True))

    # -- queue controls ---------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        """Stop every daemon from starting tasks of the queue (submissions still accepted)."""
        if queue not in self._ready_queues:
            await self.ensure_queue(queue)
        async with translated():
            await self.redis.set(self.keys(queue).paused, "1")

    async def resume(self, queue: str) -> None:
        """Let daemons start the queue's tasks again."""
        async with translated():
            await self.redis.delete(self.keys(queue).paused)

    async def paused_queues(self, queues: Sequence[str]) -> set[str]:
        """Which of the queues are paused."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue in queues:
                pipe.exists(self.keys(queue).paused)
            flags = await pipe.execute()
        return {q for q, flag in zip(queues, flags, strict=True) if flag}

    async def purge(self, queue: str, step: int = 500) -> int:
        """Cancel every waiting task of the queue (running ones finish); returns how many."""
        k = self.keys(queue)
        total = 0
        async with translated():
            while True:
                done, examined = await self._scripts["purge"](
                    keys=[k.stats, k.events, k.finished, k.delayed, k.depth, *k.streams.values()],
                    args=[GROUP, k.task_prefix, self.events_maxlen, step],
                )
                total += int(done)
                if not int(examined):
                    return total

    async def time_ms(self) -> int:
        """Redis's clock in epoch milliseconds (every daemon agrees on it)."""
        async with translated():
            seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def schedule_seen(self, queue: str, name: str) -> int | None:
        """The last occurrence (ms) a schedule enqueued, or None before its first start."""
        async with translated():
            value = await self.redis.get(self.keys(queue).schedule(name))
        return None if value is None else int(value)

    async def schedule_mark(self, queue: str, name: str, occurrence_ms: int) -> int | None:
        """Move a schedule's marker forward to ``occurrence_ms``; returns the previous one."""
        async with translated():
            previous = await self._scripts["schedule_mark"](
                keys=[self.keys(queue).schedule(name)], args=[occurrence_ms]
            )
        return int(previous) if previous != "" else None

    # -- supervisor side ------------------------------------------------------------

    async def promote(self, queue: str, limit: int = 1000) -> tuple[int, int]:
        """Move due delayed tasks to their streams; returns (moved, ms to next due or -1)."""
        k = self.keys(queue)
        async with translated():
            moved, wait_ms = await self._scripts["promote"](
                keys=[k.delayed, k.stats, k.events, k.depth, *k.streams.values()],
                args=[limit, k.task_prefix, self.events_maxlen],
            )
        return int(moved), int(wait_ms)

    async def promote_many(self, queues: Sequence[str], limit: int = 1000) -> list[tuple[int, int]]:
        """:meth:`promote` for many queues in one round trip."""
        calls: list[tuple[str, list[str], list[Any]]] = []
        for queue in queues:
            k = self.keys(queue)
            calls.append(
                (
                    "promote",
                    [k.delayed, k.stats, k.events, k.depth, *k.streams.values()],
                    [limit, k.task_prefix, self.events_maxlen],
                )
            )
        async with translated():
            replies = await self._pipelined(calls)
        return [(int(moved), int(wait_ms)) for moved, wait_ms in replies]

    async def reclaim_many(
        self,
        streams: Sequence[tuple[str, int, str]],
        consumer: str,
        min_idle_ms: int,
        count: int = 100,
    ) -> list[Reclaimed]:
        """:meth:`reclaim` for many (queue, priority, cursor) streams in one round trip."""
        calls: list[tuple[str, list[str], list[Any]]] = []
        for queue, priority, cursor in streams:
            k = self.keys(queue)
            calls.append(
                (
                    "reclaim",
                    [k.stream(priority), k.stats, k.events, k.finished, k.dead, k.depth],
                    [
                        GROUP,
                        consumer,
                        min_idle_ms,
                        cursor,
                        count,
                        k.task_prefix,
                        self.events_maxlen,
                    ],
                )
            )
        async with translated():
            replies = await self._pipelined(calls)
        return [Reclaimed(str(r[0]), list(r[1]), list(r[2]), list(r[3])) for r in replies]

    async def reclaim(
        self,
        queue: str,
        priority: int,
        consumer: str,
        min_idle_ms: int,
        cursor: str,
        count: int = 100,
    ) -> Reclaimed:
        """XAUTOCLAIM entries idle past the lease in one stream and re-queue their tasks."""
        k = self.keys(queue)
        async with translated():
            reply = await self._scripts["reclaim"](
                keys=[k.stream(priority), k.stats, k.events, k.finished, k.dead, k.depth],
                args=[
                    GROUP,
                    consumer,
                    min_idle_ms,
                    cursor,
                    count,
                    k.task_prefix,
                    self.events_maxlen,
                ],
            )
        return Reclaimed(str(reply[0]), list(reply[1]), list(reply[2]), list(reply[3]))

    async def expire(self, queue: str, retention_ms: int, limit: int = 1000) -> int:
        """Delete finished tasks older than the retention; returns how many."""
        k = self.keys(queue)
        async with translated():
            return int(
                await self._scripts["expire"](
                    keys=[k.finished, k.index, k.dead, k.stats],
                    args=[retention_ms, limit, k.task_prefix, k.unique_prefix],
                )
            )

    async def trim(self, queue: str) -> int:
        """Trim every ready stream of a queue below its oldest still-needed entry."""
        k = self.keys(queue)
        removed = 0
        async with translated():
            for priority, stream in k.streams.items():
                removed += int(
                    await self._scripts["trim"](keys=[stream, k.depth], args=[GROUP, priority])
                )
        return removed

    async def consumers(self, queue: str) -> dict[str, tuple[int, int]]:
        """Consumer name -> (entries pending, ms idle) summed over a queue's streams."""
        k = self.keys(queue)
        found: dict[str, tuple[int, int]] = {}
        async with translated():
            for stream in k.streams.values():
                try:
                    infos = await self.redis.xinfo_consumers(stream, GROUP)
                except rexc.ResponseError:
                    continue
                for info in infos:
                    pending, idle = found.get(info["name"], (0, 1 << 62))
                    found[info["name"]] = (
                        pending + int(info["pending"]),
                        min(idle, int(info["idle"])),
                    )
        return found

    async def is_alive(self, consumer: str) -> bool:
        """True while the consumer's heartbeat record exists."""
        async with translated():
            return bool(await self.redis.exists(keys.worker_info(consumer)))

    async def delete_consumer(self, queue: str, consumer: str) -> None:
        """Remove a consumer from every stream's group (only once it holds nothing)."""
        async with translated():
            for stream in self.keys(queue).streams.values():
                try:
                    await self.redis.xgroup_delconsumer(stream, GROUP, consumer)
                except rexc.ResponseError:
                    continue

    # -- events -----------------------------------------------------------------------

    async def last_event_ids(self, queues: Sequence[str]) -> dict[str, str]:
        """The newest event id of each queue ('0-0' when it has none)."""
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.xrevrange(self.keys(q).events, count=1)
            replies = await pipe.execute()
        return {q: (r[0][0] if r else "0-0") for q, r in zip(queues, replies, strict=True)}

    async def read_events(
        self, after: dict[str, str], count: int = 1000, block_ms: int | None = None
    ) -> list[Event]:
        """Events after the given id of each queue, oldest first; blocks when asked.

        On Redis Cluster, where each queue's stream lives in its own slot, the queues are
        read in one pipeline, and a blocking wait watches each queue concurrently.
        """
        if not self.cluster or len(after) <= 1:
            streams = {self.keys(q).events: last for q, last in after.items()}
            client = self._blocking if block_ms is not None else self.redis
            async with translated():
                reply = await client.xread(streams, count=count, block=block_ms)
            return self._events(reply)
        events = await self._read_each(after, count)
        if events or block_ms is None:
            return events
        waits = [
            asyncio.create_task(
                self._blocking.xread({self.keys(q).events: last}, count=1, block=block_ms)
            )
            for q, last in after.items()
        ]
        try:
            async with translated():
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()  # XREAD holds no state: nothing is lost by cancelling
        return await self._read_each(after, count)

    async def _read_each(self, after: dict[str, str], count: int) -> list[Event]:
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for queue, last in after.items():
                pipe.xread({self.keys(queue).events: last}, count=count)
            replies = await pipe.execute()
        return [event for reply in replies for event in self._events(reply)]

    def _events(self, reply: Any) -> list[Event]:
        queue_of: dict[str, str] = {}
        events: list[Event] = []
        for stream, entries in reply or []:
            queue = queue_of.get(stream) or stream.split("{", 1)[1].rsplit("}", 1)[0]
            queue_of[stream] = queue
            for event_id, fields in entries:
                events.append(
                    Event(
                        queue,
                        event_id,
                        fields["kind"],
                        int(fields["ts"]),
                        orjson.loads(fields["task"]),
                    )
                )
        return events

    # -- HTTP API: delete, queue depth, resumable event positions --------------------

    def _script(self, name: str) -> Any:
        """A script registered on first use (scripts added after SCRIPT_NAMES)."""
        found = self._scripts.get(name)
        if found is None:
            found = self._scripts[name] = self.redis.register_script(load_script_source(name))
        return found

    async def delete(self, task_id: str) -> str:
        """Delete a finished task now; returns the status it had. WrongState if unfinished."""
        task = await self.get(task_id)
        k = self.keys(task.queue)
        pointer = k.unique(task.unique_key) if task.unique_key else k.task(task_id)
        self._script("delete")
        async with translated():
            return str(
                await self._call(
                    "delete",
                    task_id,
                    "delete",
                    keys=[k.task(task_id), k.stats, k.index, k.finished, k.dead, k.events, pointer],
                    args=[self.events_maxlen],
                )
            )

    async def depth_by_priority(self, queue: str | None = None) -> dict[int, int]:
        """Ready tasks not yet delivered to a worker, per priority, over one or all queues.

        Read from the depth counters the scripts keep (O(1) per queue).
        """
        queues = [queue] if queue else await self.queues()
        depth = dict.fromkeys(keys.PRIORITIES, 0)
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.hgetall(self.keys(q).depth)
            for raw in await pipe.execute():
                for priority, count in raw.items():
                    if int(priority) in depth:
                        depth[int(priority)] += max(0, int(count))
        return depth

    async def event_gaps(self, after: dict[str, str]) -> set[str]:
        """Queues whose events after the given id may have been trimmed from the capped stream.

        Trimming removes the oldest entries, so events after ``after[q]`` are all still
        there when ``after[q]`` is at or past the first kept entry, or nothing was removed.
        """
        queues = list(after)
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                pipe.xinfo_stream(self.keys(q).events)
            replies = await pipe.execute(raise_on_error=False)
        gaps: set[str] = set()
        for q, info in zip(queues, replies, strict=True):
            if not isinstance(info, dict) or int(info.get("entries-added") or 0) <= int(
                info.get("length") or 0
            ):
                continue
            first = info.get("first-entry")
            first_id = str(first[0]) if first else str(info.get("last-generated-id", "0-0"))
            if stream_id_key(after[q]) < stream_id_key(first_id):
                gaps.add(q)
        return gaps

    # -- dashboard: leases, a task's history, what taskd holds in Redis ---------------

    async def lease(self, task: Task) -> tuple[str, int, int] | None:
        """Who holds a task's stream entry: (consumer, ms since renewal, deliveries), or None.

        XPENDING on the one entry the attempt was delivered as. Workers renew with
        XCLAIM JUSTID, which resets the idle time but keeps the delivery count, so the
        idle time is the lease's age and the supervisor reclaims the entry once it passes
        ``lease_s``; a delivery count above one means the task was reclaimed before.
        """
        if not task.sid:
            return None
        stream = self.keys(task.queue).stream(task.priority)
        async with translated():
            try:
                rows = await self.redis.xpending_range(stream, GROUP, task.sid, task.sid, 1)
            except rexc.ResponseError:  # NOGROUP: the streams were flushed
                return None
        if not rows:
            return None
        row = rows[0]
        return str(row["consumer"]), int(row["time_since_delivered"]), int(row["times_delivered"])

    async def task_events(self, task: Task, *, max_scan: int = 5000) -> tuple[list[Event], bool]:
        """A task's events, oldest first, and whether they reach back to its creation.

        Only the stretch of its queue's events stream between the task's creation and its
        last update is read (stream ids are Redis-clock milliseconds, like the task's
        timestamps), newest first and at most ``max_scan`` entries, so a click costs a
        bounded read and what a bound cuts off is the oldest part.
        """
        stream = self.keys(task.queue).events
        # A second of slack: an entry's id and the script's TIME may straddle a millisecond.
        low = f"{task.created_at - 1000}-0" if task.created_at > 1000 else "-"
        high = str(task.updated_at + 1000) if task.status.finished else "+"
        found: list[Event] = []
        scanned = 0
        async with translated():
            while scanned < max_scan:
                entries = await self.redis.xrevrange(stream, high, low, count=500)
                for event_id, fields in entries:
                    raw = fields.get("task", "")
                    if task.id not in raw:  # cheap test before parsing
                        continue
                    data = orjson.loads(raw)
                    if data.get("id") == task.id:
                        kind, ts = fields["kind"], int(fields["ts"])
                        found.append(Event(task.queue, event_id, kind, ts, data))
                scanned += len(entries)
                if len(entries) < 500:
                    break
                high = "(" + entries[-1][0]
        found.reverse()
        # Complete when its first event (creation) is there: not trimmed, not cut off.
        return found, bool(found) and found[0].kind == "created"

    async def server_facts(self) -> dict[str, Any]:
        """INFO's server and memory sections; on a cluster, summed (memory) over its nodes."""
        async with translated():
            server = await self.redis.info("server")
            memory = await self.redis.info("memory")
        nodes = [memory]
        if memory and all(isinstance(v, dict) for v in memory.values()):
            nodes = list(memory.values())
        if server and all(isinstance(v, dict) for v in server.values()):
            server = min(server.values(), key=lambda i: str(i.get("redis_version", "")))
        flavour = "valkey" if "valkey_version" in server else "redis"
        return {
            "flavour": flavour,
            "version": str(server.get("valkey_version") or server.get("redis_version", "")),
            "mode": str(server.get("redis_mode", "standalone")),
            "nodes": len(nodes),
            "uptime_s": int(server.get("uptime_in_seconds") or 0),
            "used_memory": sum(int(n.get("used_memory") or 0) for n in nodes),
            "used_memory_peak": sum(int(n.get("used_memory_peak") or 0) for n in nodes),
            "maxmemory": sum(int(n.get("maxmemory") or 0) for n in nodes),
            "maxmemory_policy": str(nodes[0].get("maxmemory_policy", "")) if nodes else "",
        }

    async def count_keys(self, limit: int = 100_000) -> tuple[int, bool]:
        """How many keys taskd holds (SCAN MATCH taskd:*), counting at most ``limit``.

        Returns (count, complete); SCAN walks the keyspace in small steps, so even a big
        shared Redis is never blocked, and the limit bounds the walk.
        """
        count = 0
        async with translated():
            async for _ in self.redis.scan_iter(match="taskd:*", count=1000):
                count += 1
                if count >= limit:
                    return count, False
        return count, True

    async def queue_states(
        self, queues: Sequence[str]
    ) -> list[tuple[dict[str, int], dict[int, int], bool]]:
        """(counts per status and total, ready depth per priority, paused) of each queue.

        One pipeline for every queue, so listing queues costs one round trip however
        many there are (the per-queue methods would cost three each).
        """
        async with translated():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues:
                k = self.keys(q)
                pipe.hgetall(k.stats)
                pipe.hgetall(k.depth)
                pipe.exists(k.paused)
            replies = await pipe.execute()
        found: list[tuple[dict[str, int], dict[int, int], bool]] = []
        for i in range(len(queues)):
            raw_stats, raw_depth, paused = replies[3 * i : 3 * i + 3]
            counts = dict.fromkeys((*STATUS_NAMES, "total"), 0)
            counts |= {n: int(v) for n, v in raw_stats.items() if n in counts}
            depth = dict.fromkeys(keys.PRIORITIES, 0)
            for priority, count in raw_depth.items():
                if int(priority) in depth:
                    depth[int(priority)] = max(0, int(count))
            found.append((counts, depth, bool(paused)))
        return found


class CancelRequests:
    """Pub/sub subscription to the cancel channel; close it when done."""

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub
        self._subscribed = False

    async def get(self, timeout_s: float = 1.0) -> str | None:
        """The next requested task id, or None after ``timeout_s`` without one."""
        async with translated():
            if not self._subscribed:
                await self._pubsub.subscribe(keys.CANCEL_CHANNEL)
                self._subscribed = True
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=timeout_s
            )
        if message is None or message.get("type") != "message":
            return None
        return str(message["data"])

    async def close(self) -> None:
        """Unsubscribe and release the connection."""
        await self._pubsub.aclose()


def _new_task(spec: TaskSpec, status: str, sid: str, due: str | int, now: int) -> Task:
    """The Task enqueue.lua stored, rebuilt from the spec without reading it back."""
    return Task(
        id=spec.id,
        name=spec.name,
        task_type=spec.task_type,
        queue=spec.queue,
        priority=spec.priority,
        payload=spec.payload,
        status=Status(status),
        max_retries=spec.max_retries,
        timeout_s=spec.timeout_s,
        created_at=now,
        updated_at=now,
        run_at=int(due) if due != "" else None,
        unique_key=spec.unique_key,
        sid=sid,
    )


def _enqueue_args(spec: TaskSpec) -> list[Any]:
    return [
        spec.id,
        spec.name,
        spec.task_type,
        spec.queue,
        spec.priority,
        spec.payload_json,
        spec.max_retries,
        spec.timeout_s,
        "" if spec.delay_ms is None else spec.delay_ms,
        "" if spec.run_at_ms is None else spec.run_at_ms,
        spec.unique_key or "",
    ]


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id ('<ms>-<seq>', or just '<ms>') as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
