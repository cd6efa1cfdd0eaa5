--[[
  Release the tasks of one queue's share of a workflow that wait for nothing (its
  roots), once every share exists (see wf_add.lua). Safe to repeat: only 'waiting' tasks
  with no dependency left move.

  KEYS[1]  stats hash (names the queue's slot; the other keys are derived from its tag)

  ARGV[1]  events MAXLEN    ARGV[2..]  task ids

  Reply: how many were released.
  Events: released (one per task).
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
