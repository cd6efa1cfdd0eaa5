"""From a Redis URL to clients: one server, a Cluster, or a master found via Sentinel."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from taskd.errors import TaskdError

MIN_VERSIONS = {"redis": (7, 0, 0), "valkey": (7, 2, 0)}


class _HiredisPacking:
    """Pack commands with hiredis (C) instead of redis-py's pure-Python async packer.

    Packing script arguments dominated the client's CPU profile of batch submits.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


def _fast_packing(client: Any) -> Any:
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
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        _host_ports(hosts), socket_connect_timeout=1, socket_timeout=2
    )
    return (
        _fast_packing(sentinel.master_for(master, socket_timeout=5, **options)),
        _fast_packing(sentinel.master_for(master, **options)),
        list(sentinel.sentinels),
    )
