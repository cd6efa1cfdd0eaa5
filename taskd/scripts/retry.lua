--[[
  Send a failed or cancelled task back to pending by hand, with its attempts reset. A
  workflow task whose dependencies have not all completed (a dependent that a parent's
  failure cancelled, or a member of a cancelled workflow) goes back to waiting instead:
  it runs once they complete, never without their results.

  KEYS[1]  task hash     KEYS[2]  stats hash     KEYS[3]  events stream
  KEYS[4]  finished zset KEYS[5]  dead zset      KEYS[6]  ready stream of its priority
  KEYS[7]  depth hash

  ARGV[1]  events MAXLEN

  Reply: 'pending' or 'waiting'.
  Events: retried; rearmed for workflow dependents its failure cancelled (_flow.lua).
  Errors: TASKD_NOTFOUND, TASKD_STATE <status> (not failed or cancelled).
]]
local task_key, stats, events, finished, dead, stream, depth =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local maxlen = ARGV[1]

local task = load_task(task_key, {'children', 'wf_key', 'parents', 'run_on_failure'})
if not task then return fail_with('NOTFOUND', task_key) end
local status = task.status
if status ~= 'failed' and status ~= 'cancelled' then return fail_with('STATE', status) end

local now = now_ms()
local left = 0
if task.parents and task.parents ~= '' then
  left = flow_unmet(task_key, task.parents, task.run_on_failure == '1')
end
-- A rate-limit slot booked before it finished (`rl`) is long gone: check the limits anew.
clear(task_key, task, 'completed_at', 'started_at', 'worker', 'cancel', 'result', 'run_at', 'rl')
if left > 0 then
  clear(task_key, task, 'error')  -- a waiting task has no failed attempt to tell of
  update(task_key, task, 'status', 'waiting', 'sid', '', 'deps_left', left)
else
  local sid = redis.call('XADD', stream, '*', 'id', task.id)
  redis.call('HINCRBY', depth, task.priority, 1)
  update(task_key, task, 'status', 'pending', 'sid', sid)
end
update(task_key, task, 'retry_count', 0, 'progress', 0, 'progress_message', '',
  'updated_at', int(now))
redis.call('ZREM', finished, task.id)
redis.call('ZREM', dead, task.id)
move(stats, status, task.status)
emit_task(events, maxlen, 'retried', task, now)
flow_run({{tag_of(task_key), task, 'rearm', ''}}, now, maxlen)
return task.status
