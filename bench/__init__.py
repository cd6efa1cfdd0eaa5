"""taskd's benchmark suite (issue 6): taskd's own workloads and the same workloads for peers.

Not part of the taskd package: run it from a source checkout with ``python -m bench`` or
``taskd bench``. See ``bench/RESULTS.md`` for the latest run and how to reproduce it.
"""
