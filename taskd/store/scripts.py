"""The Lua scripts of taskd/scripts, each with the part of the shared prelude it uses.

Lua has no includes, so the prelude (``_lib.lua``, ``_flow.lua``) is put in front of each
script's text. Redis runs a script's whole text on every call, prelude included: each
``local function`` makes a closure and each table constructor a table, every time. All
of it cost about 10 µs of Redis CPU per call, a fifth of a single submit's. So each
script gets only the prelude definitions it names, directly or through other definitions
it needs, in their original order.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

SCRIPT_NAMES = (
    "enqueue",
    "submit",
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
PRELUDE_FILES = ("_lib.lua", "_flow.lua")

_DEFINITION = re.compile(r"^local (?:function (\w+)|([\w, ]+?)\s*=)")
_WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True, slots=True)
class Definition:
    """One top-level definition of the prelude, with the comments before it."""

    names: frozenset[str]
    text: str
    uses: frozenset[str]


def split_definitions(prelude: str) -> list[Definition]:
    """The prelude's top-level definitions, in order. A definition starts at a line
    ``local function f`` or ``local a, b = ...`` in column 0 and runs until the next one;
    comments and blank lines just before a definition belong to it."""
    found: list[Definition] = []
    lines = prelude.split("\n")
    start = 0
    names: list[str] = []

    def close(end: int) -> None:
        if names:
            text = "\n".join(lines[start:end])
            words = frozenset(_WORD.findall(_code_of(text)))
            found.append(Definition(frozenset(names), text, words - frozenset(names)))

    lead = 0  # first line of the comments and blank lines before the current line
    in_comment = False  # inside a --[[ ... ]] block
    for i, line in enumerate(lines):
        stripped = line.strip()
        if in_comment or stripped.startswith("--[["):
            in_comment = "]]" not in stripped
            continue  # a comment line leads into what follows
        match = _DEFINITION.match(line)
        if match:
            close(lead)
            start = lead
            defined = match.group(1) or match.group(2)
            names = [n.strip() for n in defined.split(",")]
        if stripped and not stripped.startswith("--"):
            lead = i + 1
    close(len(lines))
    return found


def _code_of(text: str) -> str:
    """Lua text without its comments (long and line ones), for finding the names it uses."""
    text = re.sub(r"--\[\[.*?\]\]", "", text, flags=re.S)
    return re.sub(r"--[^\n]*", "", text)


def prelude_for(body: str, definitions: list[Definition]) -> str:
    """The definitions ``body`` needs (transitively), in prelude order."""
    wanted = set(_WORD.findall(_code_of(body)))
    included: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, definition in enumerate(definitions):
            if i not in included and definition.names & wanted:
                included.add(i)
                wanted |= definition.uses
                changed = True
    return "\n".join(d.text for i, d in enumerate(definitions) if i in included)


@functools.cache
def _prelude_definitions() -> list[Definition]:
    folder = resources.files("taskd") / "scripts"
    return split_definitions("\n".join((folder / f).read_text() for f in PRELUDE_FILES))


def load_script_source(name: str) -> str:
    """A script's text with the prelude definitions it uses in front."""
    body = (resources.files("taskd") / "scripts" / f"{name}.lua").read_text()
    return prelude_for(body, _prelude_definitions()) + "\n" + body
