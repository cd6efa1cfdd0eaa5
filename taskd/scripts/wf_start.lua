--[[
  Release the tasks of one queue's share of a workflow that wait for nothing (its
  roots), once every share exists (see wf_add.lua). Safe to repeat: only 'waiting' tasks
  with no dependency left move.

  KEYS[1]  stats hash (names the queue's slot; the other keys are derived from its tag)

  ARGV[1]  events MAXLEN    ARGV[2..]  task ids

  Reply: how many were released.
  Events: released (one per task).
  Cluster: the keys built here from KEYS[1]'s tag 'taskd:{<queue>}' (each task hash
  ':task:<id>', and in flow_release ':stream:<priority>', ':depth', ':delayed', ':stats',
  ':events') all carry KEYS[1]'s hash tag, so they hash to KEYS[1]'s slot: Redis Cluster
  lets a script use undeclared keys of a declared key's slot. They are the names
  taskd.keys makes (tests/test_workflow_slots.py checks both).
]]
local tag = tag_of(KEYS[1])
local maxlen = ARGV[1]
local now = now_ms()
local released = 0
for i = 2, #ARGV do
  local key = tag .. ':task:' .. ARGV[i]
  local task = load_task(key, FLOW_FIELDS)
  if task and task.status == 'waiting' and tonumber(task.deps_left or '0') <= 0 then
    flow_release(tag, key, task, now, maxlen)
    released = released + 1
  end
end
return released
