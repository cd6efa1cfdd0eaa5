--[[
  Cancel a task: at once when it waits (pending, scheduled, retrying, waiting) or is reserved by a
  worker that has not started it; cooperatively when it runs (flag it and publish its id
  so the holding worker cancels the handler; the holder also sees the flag at its next
  lease renewal, should the publish not reach it).

  KEYS[1]  task hash     KEYS[2]  stats hash     KEYS[3]  events stream
  KEYS[4]  finished zset KEYS[5]  delayed zset   KEYS[6]  ready stream of its priority
  KEYS[7]  depth hash    KEYS[8]  front zset

  ARGV[1]  events MAXLEN    ARGV[2]  cancel pub/sub channel    ARGV[3]  group

  Reply: 'cancelled' or 'cancelling' (processing; the worker will confirm).
  Events: cancelled, or cancel_requested; workflow dependents cancel too (_flow.lua).
  Errors: TASKD_NOTFOUND, TASKD_STATE <status> (already finished).
]]
local task_key, stats, events, finished, delayed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local stream, depth, front = KEYS[6], KEYS[7], KEYS[8]
local maxlen, channel, group = ARGV[1], ARGV[2], ARGV[3]

local task = load_task(task_key, {'sid', 'children', 'wf_key'})
if not task then return fail_with(CODE.NOTFOUND, task_key) end
local status = task.status
local now = now_ms()

if status == 'processing' then
  update(task_key, task, 'cancel', '1', 'updated_at', int(now))
  emit_task(events, maxlen, 'cancel_requested', task, now)
  redis.call('PUBLISH', channel, task.id)
  return 'cancelling'
end
if status ~= 'pending' and status ~= 'scheduled' and status ~= 'retrying'
    and status ~= 'reserved' and status ~= 'waiting' then
  return fail_with(CODE.STATE, status)
end

local sid = task.sid or ''
if status == 'reserved' then
  -- Held but not started: the holder's begin is refused from now on; the publish lets
  -- it drop the task from its buffer at once.
  redis.call('XACK', stream, group, sid)
  redis.call('PUBLISH', channel, task.id)
elseif status == 'pending' and sid ~= '' then
  -- Remove the entry so no worker ever sees it. Depth counts undelivered entries and
  -- ones a blocking read delivered that fetch.lua has not taken (it skips this one now),
  -- not the front's.
  local at_front = redis.call('ZREM', front, task.id) == 1
  local delivered = at_front or #redis.call('XPENDING', stream, group, sid, sid, 1) > 0
  if delivered then redis.call('XACK', stream, group, sid) end
  if redis.call('XDEL', stream, sid) == 1 and not at_front then
    redis.call('HINCRBY', depth, task.priority, -1)
  end
end
redis.call('ZREM', delayed, task.id)
update(task_key, task, 'status', 'cancelled', 'completed_at', int(now), 'updated_at', int(now))
move(stats, status, 'cancelled')
redis.call('ZADD', finished, int(now), task.id)
emit_task(events, maxlen, 'cancelled', task, now)
flow_ended(tag_of(task_key), task, 'cancelled', now, maxlen)
return 'cancelled'
