"""The connection, key names and script plumbing every part of the store shares."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster

from taskd import keys
from taskd.errors import TaskdError
from taskd.keys import GROUP, Keys
from taskd.log import mask_url
from taskd.store.connect import MIN_VERSIONS, _clients
from taskd.store.held import Held, HeldCalls
from taskd.store.scripts import SCRIPT_NAMES, load_script_source
from taskd.store.translate import translate, translated

if TYPE_CHECKING:
    from taskd.store.enqueue import Enqueuer

Call = tuple[str, list[str], list[Any]]  # (script name, KEYS, ARGV)
CLUSTER_SUBMITS = 32  # single submits in flight at once on a Cluster


class StoreBase:
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
        self._ensuring: dict[str, asyncio.Future[None]] = {}
        self._enqueuer: Enqueuer | None = None
        self._held_calls = HeldCalls(self)  # fetch calls of idle pools
        self._held_reads = Held(blocking)  # the blocking reads that wake them
        # On a Cluster single submits use the cluster client's per-node pools, which refuse
        # a connection past their cap: a burst of concurrent callers waits here instead.
        self._cluster_submits = asyncio.Semaphore(CLUSTER_SUBMITS)

    @classmethod
    async def connect(cls, url: str, *, cluster: bool = False, events_maxlen: int = 10_000) -> Self:
        """Connect, check the server version, and return a ready store.

        ``redis://``, ``rediss://`` and ``unix://`` name one server;
        ``redis+cluster://host:port[,host:port]`` (or ``cluster=True``) a Redis Cluster;
        ``redis+sentinel://host:port[,host:port]/master`` a master found via Sentinel.
        """
        try:
            client, blocking, extra = _clients(url, cluster)
        except ValueError as exc:  # redis-py's URL parsing (scheme, port, db)
            raise TaskdError(f"bad Redis URL {mask_url(url)!r}: {exc}") from None
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

    async def ready_queue(self, queue: str) -> None:
        """ensure_queue once per queue and process: concurrent first submits to a new queue
        share one creation rather than each opening a connection for it."""
        if queue in self._ready_queues:
            return
        pending = self._ensuring.get(queue)
        if pending is None:
            pending = self._ensuring[queue] = asyncio.ensure_future(self.ensure_queue(queue))
            pending.add_done_callback(lambda f: self._ensured(queue, f))
        await asyncio.shield(pending)

    def _ensured(self, queue: str, done: asyncio.Future[None]) -> None:
        self._ensuring.pop(queue, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: every waiter may have been cancelled

    def script_sha(self, name: str) -> str:
        """The SHA1 of a script, for EVALSHA."""
        return str(self._scripts[name].sha)

    async def load_scripts(self, names: set[str]) -> None:
        """SCRIPT LOAD these scripts again (Redis restarted or flushed them)."""
        async with translated():
            for name in names:
                await self.redis.script_load(self._scripts[name].script)

    async def queues(self) -> list[str]:
        """Every queue that ever had a task, sorted."""
        async with translated():
            names = await self.redis.smembers(keys.QUEUES)
        return sorted(names)

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

    async def _streamed(
        self,
        count: int,
        call: Callable[[int], tuple[str, list[str], list[Any]]],
        on_reply: Callable[[int, Any], None],
    ) -> None:
        """Run ``count`` script calls (``call(i)`` builds the i-th) in order on one connection,
        the next already sent while a reply is awaited: Redis runs one while this process
        builds the next and handles the last reply. ``on_reply(i, reply)`` gets each (in
        order but for the NOSCRIPT case).

        Calls stay separate atomic scripts in their order (one connection), at most two
        queued in Redis at a time. A call that found its script missing (Redis restarted
        or flushed them) had no effect: scripts are reloaded and it is sent again. On a
        cluster (scripts of one batch share a slot, but not this connection model) the
        calls simply go one by one.
        """
        if self.cluster:
            for i in range(count):
                (reply,) = await self._pipelined([call(i)])
                on_reply(i, reply)
            return
        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        try:
            await self._stream_on(conn, count, call, on_reply)
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def _stream_on(
        self,
        conn: Any,
        count: int,
        call: Callable[[int], tuple[str, list[str], list[Any]]],
        on_reply: Callable[[int, Any], None],
    ) -> None:
        calls: dict[int, tuple[str, list[str], list[Any]]] = {}

        def packed(i: int) -> Any:
            name, script_keys, args = calls[i] = call(i)
            sha = self._scripts[name].sha
            return conn.pack_command("EVALSHA", sha, len(script_keys), *script_keys, *args)

        sent = done = 0
        redo: list[int] = []
        while done < count:
            while sent < count and sent - done < 2:
                try:
                    await conn.send_packed_command(packed(sent), check_health=sent == 0)
                except rexc.ConnectionError:
                    if sent > 0:
                        raise
                    await conn.disconnect()  # a pooled connection Redis dropped: once more
                    await conn.send_packed_command(packed(sent))
                sent += 1
            try:
                on_reply(done, await conn.read_response())
                del calls[done]
            except rexc.NoScriptError:
                redo.append(done)
            done += 1
        if redo:
            for name in {calls[i][0] for i in redo}:
                await self.redis.script_load(self._scripts[name].script)
            for i, reply in zip(redo, await self._pipelined([calls[i] for i in redo]), strict=True):
                on_reply(i, reply)

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

    async def run_script(self, name: str, script_keys: list[str], args: list[Any]) -> Any:
        """One script call through the client's pool (loading the script if Redis lost it)."""
        return await self._scripts[name](keys=script_keys, args=args)

    async def call_held(self, name: str, script_keys: list[str], args: list[Any]) -> Any:
        """A script call someone waits on (an idle pool's fetch): on a connection held
        out of the pool on one server (see taskd.store.held), through the pool on a
        Cluster, whose client routes each call to its node."""
        if self.cluster:
            return await self.run_script(name, script_keys, args)
        return await self._held_calls.call(name, script_keys, args)

    async def _call(self, script: str, task_id: str, action: str, **kw: Any) -> Any:
        try:
            return await self._scripts[script](**kw)
        except rexc.ResponseError as exc:
            raise translate(exc, task_id, action) from None

    async def time_ms(self) -> int:
        """Redis's clock in epoch milliseconds (every daemon agrees on it)."""
        async with translated():
            seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

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
