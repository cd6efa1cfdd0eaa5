"""The workflow scripts on Redis Cluster: every key they build from a queue's hash tag
(rather than receive in KEYS) is a key taskd.keys names for that queue and lies in the
slot of a declared KEYS entry, so Redis Cluster runs them."""

from __future__ import annotations

import re
from pathlib import Path

from redis.crc import key_slot

from taskd.keys import Keys
from taskd.store import Store
from taskd.workflow import make_workflow, queue_of

SCRIPTS = Path(__file__).resolve().parent.parent / "taskd" / "scripts"
BUILT = re.compile(r"tag \.\. '(:[a-z_:]+)'")
QUEUES = ("default", "q.with-dots_1", "x" * 64)
TASK_ID = "0123456789abcdef0123456789abcdef"


def _built_suffixes(*names: str) -> set[str]:
    return {m for name in names for m in BUILT.findall((SCRIPTS / name).read_text())}


def _named(k: Keys, suffix: str) -> str:
    """What taskd.keys calls the key a script builds as ``tag .. suffix [.. id]``."""
    if suffix == ":task:":
        return k.task(TASK_ID)
    if suffix == ":stream:":
        return k.stream(5)
    return str(getattr(k, suffix.strip(":")))


def _built(k: Keys, suffix: str) -> str:
    """The key as the script builds it (flow_tag / tag_of give 'taskd:{<queue>}')."""
    tail = TASK_ID if suffix == ":task:" else "5" if suffix == ":stream:" else ""
    return f"taskd:{{{k.queue}}}{suffix}{tail}"


def test_keys_built_from_the_tag_are_taskd_keys_in_the_declared_slot() -> None:
    """Each key _flow.lua, wf_start.lua and settle.lua build is the name taskd.keys gives
    it and hashes to the slot of KEYS[1] (the queue's stats hash the tag is taken from)."""
    suffixes = _built_suffixes("_flow.lua", "wf_start.lua", "settle.lua", "wf_add.lua")
    assert suffixes == {
        ":delayed",
        ":depth",
        ":events",
        ":finished",
        ":outbox",
        ":stats",
        ":stream:",
        ":task:",
    }
    for queue in QUEUES:
        k = Keys(queue)
        for suffix in suffixes:
            assert _built(k, suffix) == _named(k, suffix)
            assert key_slot(_built(k, suffix).encode()) == key_slot(k.stats.encode())


def test_wf_add_builds_no_key() -> None:
    """wf_add.lua touches only keys it is given (no key is built from a tag)."""
    text = (SCRIPTS / "wf_add.lua").read_text()
    assert not BUILT.findall(text)
    assert "tag_of(" not in text
    assert "flow_tag(" not in text


async def test_a_wf_add_call_declares_keys_of_one_slot(store: Store) -> None:
    """The KEYS of each wf_add call (one queue's share of a workflow) are all in one slot,
    whatever queues the workflow spans."""
    spec = make_workflow(
        {
            "name": "slots",
            "tasks": [
                {"key": "a", "task_type": "noop", "queue": QUEUES[0]},
                {"key": "b", "task_type": "noop", "queue": QUEUES[1], "depends_on": ["a"]},
                {"key": "c", "task_type": "noop", "queue": QUEUES[2], "unique_key": "u1"},
            ],
        }
    )
    for task_keys in queue_of(spec).values():
        script, declared, _ = store._add_call(spec, task_keys)
        assert script == "wf_add"
        assert len({key_slot(key.encode()) for key in declared}) == 1
