"""Real multi-server Redis topologies for tests: a 3-master cluster, a sentinel setup.

Every server is the same binary the embedded mode uses, on loopback ports.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from pathlib import Path

import redis.asyncio as aioredis

from taskd.embedded import EmbeddedRedis, find_server_binary
from tests.procs import free_port, pid_gone

SLOTS = 16384


def cluster_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is free and in range too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if all(_free(p) for p in (port, port + 10000)):
            return port
    raise RuntimeError("no free cluster port pair")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def start_cluster(base: Path, masters: int = 3) -> tuple[list[EmbeddedRedis], str]:
    """Start ``masters`` cluster-enabled servers, assign all slots, join them; return URL."""
    servers = [
        EmbeddedRedis(
            base / f"node{i}",
            unix_socket=False,
            appendonly=False,
            port=cluster_port(),
            extra_args=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
        )
        for i in range(masters)
    ]
    urls = [await server.start() for server in servers]
    clients = [aioredis.Redis.from_url(url, decode_responses=True) for url in urls]
    try:
        share = SLOTS // masters
        for i, client in enumerate(clients):
            last = SLOTS - 1 if i == masters - 1 else (i + 1) * share - 1
            await client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        for url in urls[1:]:
            host, port = url.removeprefix("redis://").split(":")
            await clients[0].execute_command("CLUSTER", "MEET", host, int(port))
        deadline = time.monotonic() + 20
        while True:
            infos = [await c.execute_command("CLUSTER", "INFO") for c in clients]
            if all(
                "cluster_state:ok" in str(i) and f"cluster_known_nodes:{masters}" in str(i)
                for i in infos
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not form: {infos}")
            await asyncio.sleep(0.05)
    finally:
        for client in clients:
            await client.aclose()
    return servers, "redis+cluster://" + urls[0].removeprefix("redis://")


class SentinelSetup:
    """A master, a replica and one sentinel watching them as ``mymaster``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.master = EmbeddedRedis(base / "master", unix_socket=False)
        self.replica: EmbeddedRedis | None = None
        self.sentinel_port = 0
        self.sentinel: subprocess.Popen[bytes] | None = None

    async def start(self) -> str:
        """Start all three; return the redis+sentinel:// URL. On a failure, what was
        started is stopped again before the error is raised."""
        try:
            master_url = await self.master.start()
            host, port = master_url.removeprefix("redis://").split(":")
            self.replica = EmbeddedRedis(
                self.base / "replica",
                unix_socket=False,
                extra_args=["--replicaof", host, port],
            )
            await self.replica.start()
            for _ in range(5):  # a port found free can be taken before the sentinel binds it
                if await self._start_sentinel(host, port):
                    break
            else:
                raise RuntimeError("the sentinel did not start on any of 5 free ports")
        except BaseException:
            await self.stop()
            raise
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/mymaster"

    async def _start_sentinel(self, host: str, port: str) -> bool:
        """Spawn the sentinel on a free port (picked now, after both servers took theirs)
        and wait until it sees the replica; False when the port was not its own."""
        self.sentinel_port = free_port()
        conf = self.base / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.base}\n"
            f"sentinel monitor mymaster {host} {port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        self.sentinel = self._spawn_sentinel(conf)
        client = aioredis.Redis(port=self.sentinel_port, decode_responses=True)
        try:
            deadline = time.monotonic() + 20
            while True:
                if self.sentinel.poll() is not None:  # it could not bind the port
                    self.sentinel = None
                    return False
                try:
                    if await client.execute_command("SENTINEL", "REPLICAS", "mymaster"):
                        return True
                except aioredis.ResponseError:  # another server holds the port
                    self._stop_sentinel()
                    return False
                except (OSError, aioredis.ConnectionError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("sentinel did not see the replica")
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    def _spawn_sentinel(self, conf: Path) -> subprocess.Popen[bytes]:
        """Start the sentinel (a plain Popen: it lives for the whole test)."""
        with (self.base / "sentinel.log").open("wb") as log:
            return subprocess.Popen(
                [str(find_server_binary()), str(conf), "--sentinel"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def failover(self) -> None:
        """Ask the sentinel to promote the replica; wait until it reports the new master."""
        client = aioredis.Redis(port=self.sentinel_port, decode_responses=True)
        try:
            before = await client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
            deadline = time.monotonic() + 30
            while True:  # right after start the sentinel may not know a good replica yet
                try:
                    await client.execute_command("SENTINEL", "FAILOVER", "mymaster")
                    break
                except aioredis.ResponseError as exc:
                    if "NOGOODSLAVE" not in str(exc) or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            while (
                await client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
                == before
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("failover did not happen")
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    def _stop_sentinel(self) -> None:
        if self.sentinel is not None:
            self.sentinel.terminate()
            self.sentinel.wait(10)
            assert pid_gone(self.sentinel.pid)
            self.sentinel = None

    async def stop(self) -> None:
        """Stop everything (what was started, after a failed start too)."""
        self._stop_sentinel()
        if self.replica is not None:
            await self.replica.stop()
        await self.master.stop()
