"""Submits from threads without an event loop: one blocking EVALSHA per call.

``taskd.SyncClient`` serves Django views, Flask handlers and scripts. Handing each submit
to an event-loop thread would add two thread wake-ups to every call; this path instead
writes the same enqueue script call (:func:`taskd.store.enqueue.enqueue_call`) through
redis-py's blocking connections, one per thread submitting at the same moment, kept in a
free list of its own: redis-py's pool records metrics around every checkout and release,
a tenth of a submit's time. It never retries a command: a reply lost after the script
ran must not create the task twice.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
import redis.exceptions as rexc
from redis.backoff import NoBackoff
from redis.retry import Retry

from taskd.keys import Keys
from taskd.model import TaskSpec
from taskd.store.connect import COMMON_OPTIONS
from taskd.store.enqueue import Result, enqueue_call, enqueue_results, plan
from taskd.store.scripts import load_script_source
from taskd.store.translate import translate


def direct_url(url: str) -> bool:
    """Whether ``url`` names one server this path can use (not a Cluster or Sentinel)."""
    scheme = url.partition("://")[0].lower()
    return scheme in {"redis", "rediss", "unix"}


class SyncEnqueuer:
    """Blocking submits to one Redis server; safe to share between threads."""

    def __init__(self, url: str, *, events_maxlen: int = 10_000) -> None:
        self.events_maxlen = events_maxlen
        self._redis: Any = redis.Redis.from_url(
            url,
            socket_timeout=5,
            health_check_interval=15,
            retry=Retry(NoBackoff(), 0),
            **COMMON_OPTIONS,
        )
        self._sources = {name: load_script_source(name) for name in ("enqueue", "submit")}
        self._shas = {
            name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
            for name, source in self._sources.items()
        }
        self._keys: dict[str, Keys] = {}
        self._idle: list[Any] = []  # connections no thread is using (last in, first out)
        self._lock = threading.Lock()
        self._closed = False

    def keys(self, queue: str) -> Keys:
        """Key names of a queue (cached; a lost race only builds the same object twice)."""
        found = self._keys.get(queue)
        if found is None:
            found = self._keys[queue] = Keys(queue)
        return found

    def submit(self, specs: Sequence[TaskSpec]) -> list[Result]:
        """Create tasks (the queues exist); (task, created) in input order."""
        chunks = plan(specs)
        results: list[Result | None] = [None] * len(specs)
        for chunk in chunks:
            name, script_keys, args = enqueue_call(self, chunk, specs)
            enqueue_results(self._evalsha(name, script_keys, args), chunk, specs, results)
        return [r for r in results if r is not None]

    def _evalsha(self, name: str, script_keys: list[str], args: list[Any]) -> Any:
        """One EVALSHA on a connection of the free list, packed by hiredis (redis-py's
        blocking client packs in Python and records metrics around every command: most
        of the cost of a call)."""
        sha = self._shas[name]
        packed = hiredis.pack_command(("EVALSHA", sha, len(script_keys), *script_keys, *args))
        try:
            conn = self._checkout()
            try:
                return _exchange(conn, packed)
            except rexc.NoScriptError:  # Redis restarted or flushed: the call had no effect
                self._redis.script_load(self._sources[name])
                return _exchange(conn, packed)
            except BaseException:
                conn.disconnect()  # an unread reply would answer the next call
                raise
            finally:
                self._checkin(conn)
        except (rexc.RedisError, OSError) as exc:
            raise translate(exc) from exc

    def _checkout(self) -> Any:
        """A connection for this thread alone, connected and with nothing unread on it."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            pool = self._redis.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
        try:
            stale = conn.can_read()  # (connects a new one) Redis closed it, or left data
        except (rexc.ConnectionError, rexc.TimeoutError, OSError):
            stale = True
        if stale:  # nothing was sent on it: a new connection is safe
            conn.disconnect()
            conn.connect()
        return conn

    def _checkin(self, conn: Any) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.disconnect()  # the client closed while this call ran

    def close(self) -> None:
        """Close the connections (one in use now is closed when its call returns it)."""
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for conn in idle:
            conn.disconnect()
        self._redis.close()


def _exchange(conn: Any, packed: bytes) -> Any:
    conn.send_packed_command([packed])
    return conn.read_response()
