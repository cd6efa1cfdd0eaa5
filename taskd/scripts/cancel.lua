--[[
  Cancel a task: at once when it waits (pending, scheduled, retrying); cooperatively when it
  runs (flag it and publish its id so the holding worker cancels the handler).

  KEYS[1]  task hash     KEYS[2]  stats hash     KEYS[3]  events stream
  KEYS[4]  finished zset KEYS[5]  delayed zset   KEYS[6]  ready stream of its priority
  KEYS[7]  depth hash

  ARGV[1]  events MAXLEN    ARGV[2]  cancel pub/sub channel

  Reply: 'cancelled' or 'cancelling' (processing; the worker will confirm).
  Events: cancelled, or cancel_requested.
  Errors: TASKD_NOTFOUND, TASKD_STATE <status> (already finished).
]]
local task_key, stats, events, finished, delayed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local stream, depth = KEYS[6], KEYS[7]
local maxlen, channel = ARGV[1], ARGV[2]

local task = load_task(task_key, {'sid'})
if not task then return fail_with('NOTFOUND', task_key) end
local status = task.status
local now = now_ms()

if status == 'processing' then
  update(task_key, task, 'cancel', '1', 'updated_at', int(now))
  emit_task(events, maxlen, 'cancel_requested', task, now)
  redis.call('PUBLISH', channel, task.id)
  return 'cancelling'
end
if status ~= 'pending' and status ~= 'scheduled' and status ~= 'retrying' then
  return fail_with('STATE', status)
end

if status == 'pending' and task.sid and task.sid ~= '' then
  -- Undelivered: remove the entry so no worker ever sees it. (If a blocking read already
  -- delivered it, fetch finds the task cancelled and acknowledges the entry.)
  if redis.call('XDEL', stream, task.sid) == 1 then
    redis.call('HINCRBY', depth, task.priority, -1)
  end
end
redis.call('ZREM', delayed, task.id)
update(task_key, task, 'status', 'cancelled', 'completed_at', int(now), 'updated_at', int(now))
move(stats, status, 'cancelled')
redis.call('ZADD', finished, int(now), task.id)
emit_task(events, maxlen, 'cancelled', task, now)
return 'cancelled'
