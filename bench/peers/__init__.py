"""Peers: the same e2e, enqueue, latency and io workloads for other Python task queues.

Each module ``bench/peers/<name>.py`` defines the library's app (importable by its worker
CLI) and ``PEER``, an object with the small interface below. A peer runs in its own
interpreter (the separate bench venv), driven by ``python -m bench.peers <name>``.
"""

from __future__ import annotations

from typing import Protocol

# name -> module; "taskd-serve" and "taskd-sync" are taskd (its async and blocking
# clients) measured through this same harness.
MODULES = {
    "taskd-serve": "bench.peers.taskd",
    "taskd-sync": "bench.peers.taskd_sync",
    "arq": "bench.peers.arq",
    "saq": "bench.peers.saq",
    "taskiq": "bench.peers.taskiq",
    "dramatiq": "bench.peers.dramatiq",
    "huey": "bench.peers.huey",
    "celery": "bench.peers.celery",
    "rq": "bench.peers.rq",
}

# One task's arguments: run id, tasks expected in the run, send time (0 = none), sleep ms.
Job = tuple[str, int, float, int]


class Peer(Protocol):
    """What the harness needs from a library."""

    name: str
    distribution: str  # the PyPI name, for its version
    setup: str  # how it is configured, for the report
    batch_api: str | None  # how many tasks are submitted at once; None: one by one
    e2e_cap: int | None  # at most this many e2e tasks (slow peers keep the run short)
    io: bool  # whether the io workload makes sense (False: one task at a time)

    def worker_argv(self, concurrency: int) -> list[str]:
        """The command that runs one worker process with this concurrency."""
        ...

    async def connect(self, url: str) -> None:
        """Create the submitting client."""
        ...

    async def close(self) -> None:
        """Release the submitting client."""
        ...

    async def submit(self, job: Job) -> None:
        """Submit one task."""
        ...

    async def submit_batch(self, jobs: list[Job]) -> None:
        """Submit many tasks the way the library's documentation suggests."""
        ...
