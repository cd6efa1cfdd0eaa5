"""Workload sizes: the issue's full sizes at ``--tasks 20000``, scaled down with ``--tasks``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FULL_TASKS = 20_000
QUICK_TASKS = 2_000


@dataclass(frozen=True, slots=True)
class Plan:
    """Every size and count one run uses."""

    tasks: int  # e2e and batch enqueue
    workers: int
    repeat: int  # rounds of the peer comparison (taskd core + every peer), medians kept
    single_tasks: int  # Client.submit loop, REST single POSTs
    latency_tasks: int
    io_tasks: int
    priority_probes: int
    memory_tasks: int  # per round (two rounds)
    ws_clients: int
    ws_per_s: int
    ws_duration_s: float
    chord_tasks: int  # members of the chord, and as many plain tasks to compare with
    responsive_records: int  # per data_processing task while the loop's lag is measured
    rest_connections: int = 8
    io_workers: int = 100
    io_sleep_s: float = 0.01
    io100_workers: int = 200
    io100_sleep_s: float = 0.1

    @classmethod
    def sized(cls, tasks: int, workers: int, repeat: int) -> Plan:
        """The issue's sizes at 20,000 tasks; smaller runs shrink every workload with it."""
        full = tasks >= FULL_TASKS
        return cls(
            tasks=tasks,
            workers=workers,
            repeat=repeat,
            single_tasks=max(50, tasks // 4),
            latency_tasks=min(500, max(20, tasks // 4)),
            io_tasks=min(2000, max(50, tasks // 10)),
            priority_probes=min(100, max(10, tasks // 200)),
            memory_tasks=max(100, tasks // 2),
            ws_clients=min(500, max(10, tasks // 40)),
            ws_per_s=min(2000, max(200, tasks // 10)),
            ws_duration_s=4.0 if full else 1.5,
            chord_tasks=min(10_000, max(100, tasks // 2)),
            responsive_records=1_000_000 if full else min(100_000, tasks * 50),
        )

    def peer_plan(self) -> dict[str, Any]:
        """The subset the peer harness takes (bench.peers.harness.PeerPlan)."""
        return {
            "tasks": self.tasks,
            "single_tasks": self.single_tasks,
            "batch_tasks": self.tasks,
            "latency_tasks": self.latency_tasks,
            "io_tasks": self.io_tasks,
            "workers": self.workers,
            "io_workers": self.io_workers,
            "io_sleep_ms": int(self.io_sleep_s * 1000),
        }

    def as_dict(self) -> dict[str, Any]:
        """For the JSON output."""
        return asdict(self)
