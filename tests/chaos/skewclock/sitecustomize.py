"""Injected clock skew for the chaos suite when libfaketime is not installed.

On a PYTHONPATH of a `taskd serve` child with ``TASKD_TEST_CLOCK_SKEW_S`` set, this shifts
``time.time`` and ``time.time_ns`` (the wall clock every Python-level timestamp of taskd
reads) by that many seconds. The monotonic clock stays true, as under libfaketime with
``DONT_FAKE_MONOTONIC=1``.
"""

from __future__ import annotations

import os
import time

_SKEW_S = float(os.environ.get("TASKD_TEST_CLOCK_SKEW_S", "0") or 0)
if _SKEW_S:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _SKEW_S
    time.time_ns = lambda: _time_ns() + int(_SKEW_S * 1e9)
