"""taskd's blocking client through the peer harness: ``SyncClient.submit`` per task (as a
Django or Flask view makes it), ``taskd serve`` as the worker. Like the sync peers (huey,
dramatiq), the blocking call is made on the harness's loop thread."""

from __future__ import annotations

import taskd
from bench.peers import Job
from bench.peers.taskd import TaskdPeer, _payload


class TaskdSyncPeer(TaskdPeer):
    """``SyncClient.submit`` / ``submit_many`` and ``taskd serve --workers W``."""

    name = "taskd-sync"
    setup = "`taskd serve --workers W` (prefetch W, uvloop), SyncClient.submit / submit_many"
    batch_api = "SyncClient.submit_many"

    def __init__(self) -> None:
        super().__init__()
        self._sync: taskd.SyncClient | None = None

    async def connect(self, url: str) -> None:
        """A started blocking client."""
        self._sync = taskd.SyncClient(url, handlers=["bench.peers.taskd"])
        self._sync.stats()  # starts its loop thread and connections

    async def close(self) -> None:
        """Close the client and remove the daemon's data dir."""
        if self._sync is not None:
            self._sync.close()
        await super().close()

    async def submit(self, item: Job) -> None:
        """One blocking ``SyncClient.submit``."""
        assert self._sync is not None
        self._sync.submit("bench.job", _payload(item))

    async def submit_batch(self, items: list[Job]) -> None:
        """One blocking ``SyncClient.submit_many``."""
        assert self._sync is not None
        self._sync.submit_many([{"task_type": "bench.job", "payload": _payload(i)} for i in items])


PEER = TaskdSyncPeer()
