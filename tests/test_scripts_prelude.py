"""Each Lua script carries only the prelude definitions it uses (Redis runs a script's
whole text on every call), and every script so assembled compiles on the real server."""

from __future__ import annotations

import redis.asyncio as aioredis

from taskd.store.scripts import SCRIPT_NAMES, load_script_source, prelude_for, split_definitions

PRELUDE = """--[[
  A header.
]]
local function a()
  return 1
end

-- b uses a.
local function b()
  return a() + 1
end

local X, Y = 1, 2
local function unused()
  return Y
end
"""


def test_a_script_gets_what_it_names_and_what_that_needs_in_order() -> None:
    """A body naming b gets a (which b calls) and b, in prelude order, with their
    comments, and nothing it does not use."""
    source = prelude_for("return b() + X", split_definitions(PRELUDE))
    assert source.index("local function a") < source.index("local function b")
    assert "-- b uses a." in source
    assert "local X, Y = 1, 2" in source
    assert "unused" not in source


def test_names_in_comments_pull_in_nothing() -> None:
    """A name mentioned only in a comment of the body does not add its definition."""
    assert prelude_for("-- calls b() one day\nreturn 1", split_definitions(PRELUDE)) == ""


def test_the_single_submit_script_carries_no_workflow_or_event_helpers() -> None:
    """enqueue.lua writes its event itself and never settles workflows: its text has
    neither the workflow prelude nor the event helpers' field table."""
    source = load_script_source("enqueue")
    assert "flow_run" not in source
    assert "local PUBLIC" not in source
    assert "local function record_history" in source


async def test_every_script_compiles_on_the_server(redis_url: str) -> None:
    """SCRIPT LOAD accepts every script with its trimmed prelude (a cut that split a
    definition would not compile)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        for name in SCRIPT_NAMES:
            assert await client.script_load(load_script_source(name))
    finally:
        await client.aclose()
