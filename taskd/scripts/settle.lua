--[[
  Deliver one outbox entry (a parent's end, written in the parent's slot by _flow.lua's
  flow_run) to its child in this slot. Idempotent: the child remembers which parents it
  counted (HSETNX dep:<parent>), so a drain that dies after this call and before it
  deletes the entry repeats it harmlessly.

  KEYS[1]  the child queue's stats hash (names the slot; other keys derive from its tag)

  ARGV[1]  events MAXLEN    ARGV[2]  child id    ARGV[3]  parent id
  ARGV[4]  outcome ('completed', 'failed', 'cancelled', or 'rearm': a hand retry of the
           parent brings a child its failure cancelled back to waiting)
  ARGV[5]  why ('completed', or '<key> failed' for a cancellation's error)

  Reply: 1.
  Events: released or cancelled (and cancelled for every dependent that cancels in turn).
  Cluster: the keys built here from KEYS[1]'s tag 'taskd:{<queue>}' (the child's hash and,
  through _flow.lua, ':stream:<priority>', ':depth', ':delayed', ':stats', ':events',
  ':finished', and ':outbox' for a grandchild in another queue, which is only ever reached
  through that outbox) all carry KEYS[1]'s hash tag, so they hash to KEYS[1]'s slot: Redis
  Cluster lets a script use undeclared keys of a declared key's slot. They are the names
  taskd.keys makes (tests/test_workflow_slots.py checks both).
]]
local tag = tag_of(KEYS[1])
local maxlen, child, parent, outcome, why = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = now_ms()
local work = {}
if outcome == 'rearm' then
  flow_rearm(tag, child, now, maxlen, work)
else
  flow_settle(tag, child, parent, outcome, why, now, maxlen, work)
end
flow_run(work, now, maxlen)
return 1
