"""What a peer's app reads at import time, in its worker process and in the harness."""

from __future__ import annotations

import os

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
