"""Script calls on connections held out of redis-py's pool, for the round trips users wait on.

redis-py's async client checks a connection out of its pool for every command (a lock,
then health and staleness checks), arms a timeout for each write and each read, and
records metrics around all of it: on this path that is a sixth of a fetch's round trip.
A single submit (:mod:`taskd.store.enqueue`) and an idle pool's fetch instead write their
EVALSHA straight to a connection kept aside, with one deadline for the whole exchange.
A reply lost to a broken connection raises RedisUnavailable and drops the connection;
the call may have been applied, exactly as with any lost reply.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import redis.exceptions as rexc

from taskd.store.translate import translate

if TYPE_CHECKING:
    from taskd.store.base import Call, StoreBase

REPLY_TIMEOUT_S = 5.0  # as the client's socket timeout


async def exchange(store: StoreBase, conn: Any, calls: list[Call]) -> list[Any]:
    """Send script ``calls`` in one write and read one reply each (errors in place)."""
    sha = store.script_sha
    commands = [
        ("EVALSHA", sha(name), len(script_keys), *script_keys, *args)
        for name, script_keys, args in calls
    ]
    return await exchange_commands(conn, commands, REPLY_TIMEOUT_S)


async def exchange_commands(
    conn: Any, commands: list[tuple[Any, ...]], timeout_s: float
) -> list[Any]:
    """Send ``commands`` in one write and read one reply each (errors in place), all
    within ``timeout_s``."""
    packed: list[bytes] = []
    for command in commands:
        packed += conn.pack_command(*command)
    try:
        async with asyncio.timeout(timeout_s):
            if conn.is_connected and await _stale(conn):
                await conn.disconnect()  # Redis closed it while it rested: nothing sent
            if not conn.is_connected:
                # connect() asks Sentinel for the current master (a write would connect
                # to the address last used, a demoted master after a failover).
                await conn.connect()
            await conn.send_packed_command(packed)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except rexc.ResponseError as exc:
                    replies.append(exc)
    except BaseException as exc:
        await conn.disconnect()  # an unread reply would answer the next call
        if isinstance(exc, rexc.RedisError | OSError):
            raise translate(exc) from exc
        raise
    return replies


async def _stale(conn: Any) -> bool:
    """Whether a resting connection has data or an EOF waiting (no round trip)."""
    check = getattr(conn, "can_read", None) or conn.can_read_destructive  # (redis-py < 8)
    try:
        return bool(await check())
    except rexc.ConnectionError:
        return True


def hold(client: Any) -> Any:
    """A connection of ``client``'s pool kept aside (counted as in use by the pool, so
    closing the client closes it)."""
    conn = client.connection_pool.get_available_connection()
    # One deadline per exchange instead of redis-py's per write and read: its write
    # timeout starts a task for every command, a fifth of a submit's CPU.
    conn.socket_timeout = None
    return conn


class Held:
    """Up to ``limit`` connections of one client kept aside, each used by one caller at a
    time; ``take`` gives None when all are busy (the caller then waits, or uses the pool)."""

    def __init__(self, client: Any, limit: int = 2) -> None:
        self._client = client
        self._limit = limit
        self._opened = 0
        self._idle: list[Any] = []

    def take(self) -> Any | None:
        """A connection for this caller alone, or None."""
        if self._idle:
            return self._idle.pop()
        if self._opened < self._limit:
            self._opened += 1
            return hold(self._client)
        return None

    def give_back(self, conn: Any) -> None:
        """Done with it (a connection dropped after an error reconnects on its next use)."""
        self._idle.append(conn)


class HeldCalls:
    """Script calls on held connections of the store's command client."""

    def __init__(self, store: StoreBase, limit: int = 2) -> None:
        self._store = store
        self._held = Held(store.redis, limit)

    async def call(self, name: str, script_keys: list[str], args: list[Any]) -> Any:
        """The script's reply; a script error is raised as redis-py's ResponseError."""
        conn = self._held.take()
        if conn is None:
            return await self._store.run_script(name, script_keys, args)
        try:
            (reply,) = await exchange(self._store, conn, [(name, script_keys, args)])
            if isinstance(reply, rexc.NoScriptError):  # Redis restarted or flushed: not run
                await self._store.load_scripts({name})
                (reply,) = await exchange(self._store, conn, [(name, script_keys, args)])
        finally:
            self._held.give_back(conn)
        if isinstance(reply, Exception):
            raise reply
        return reply
