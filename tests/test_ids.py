"""Task ids: random, fixed-format, and never repeated by a forked child."""

from __future__ import annotations

import os

from taskd.model import TASK_ID, new_task_id


def test_ids_are_unique_and_well_formed() -> None:
    """Many ids in a row (more than one buffered read) are distinct 32-hex-digit ids."""
    ids = [new_task_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(TASK_ID.match(i) and len(i) == 32 for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """The random buffer is dropped in a forked child: its ids differ from the parent's."""
    new_task_id()  # the parent's buffer now holds unused ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_task_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id != new_task_id()
