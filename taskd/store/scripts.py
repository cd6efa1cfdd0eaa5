"""The Lua scripts of taskd/scripts, with their shared prelude."""

from __future__ import annotations

from importlib import resources

SCRIPT_NAMES = (
    "enqueue",
    "fetch",
    "begin",
    "renew",
    "drop_consumer",
    "fail_unrunnable",
    "complete",
    "fail",
    "progress",
    "cancel",
    "retry",
    "promote",
    "reclaim",
    "release",
    "expire",
    "trim",
    "verify_depth",
    "purge",
    "delete",
    "wf_add",
    "wf_start",
    "settle",
)


def load_script_source(name: str) -> str:
    """A script's text with the shared prelude in front (Lua has no includes)."""
    folder = resources.files("taskd") / "scripts"
    prelude = (folder / "_lib.lua").read_text() + "\n" + (folder / "_flow.lua").read_text()
    return prelude + "\n" + (folder / f"{name}.lua").read_text()
