"""The startup heap is frozen out of the collector's sight, and garbage is not."""

from __future__ import annotations

import gc

from taskd.daemon.heap import freeze_startup_heap


class Node:
    """Something that can form a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_freezing_hides_what_is_alive_and_collects_what_is_not() -> None:
    before = gc.get_freeze_count()
    try:
        garbage = Node()
        garbage.other = Node()
        garbage.other.other = garbage  # a cycle only the collector can free
        del garbage
        kept = Node()
        frozen = freeze_startup_heap()
        assert frozen > before
        assert gc.is_tracked(kept)
        assert not any(isinstance(o, Node) and o is not kept for o in gc.get_objects())
        assert not any(o is kept for o in gc.get_objects())  # frozen: out of sight
    finally:
        gc.unfreeze()
