"""Keep full garbage collections short in a long-running process.

What is alive once a daemon has started (modules, classes, the app's routes, the
configuration) lives as long as the process, yet every full collection walks all of it,
holding the event loop for milliseconds each time: one during a burst of 2,000 10 ms
tasks cost the burst 7 % of its throughput. Freezing the heap left after startup takes
those objects out of the collector's sight. (Reference counting still frees them if they
are ever dropped; only cycles among them would stay.)
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what startup left behind, freeze the rest; returns how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
