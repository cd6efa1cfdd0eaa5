--[[
  Cancel a task: at once when it waits (pending, scheduled, retrying); cooperatively when it
  runs (flag it and publish its id so the holding worker cancels the handler).

  KEYS[1]  task hash     KEYS[2]  stats hash     KEYS[3]  events stream
  KEYS[4]  finished zset KEYS[5]  delayed zset

  ARGV[1]  events MAXLEN    ARGV[2]  cancel pub/sub channel

  Reply: 'cancelled' or 'cancelling' (processing; the worker will confirm).
  Events: cancelled, or cancel_requested.
  Errors: TASKD_NOTFOUND, TASKD_STATE <status> (already finished).

  A pending task's stream entry stays; fetch acknowledges and skips it.
]]
local task_key, stats, events, finished, delayed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local maxlen, channel = ARGV[1], ARGV[2]

local state = redis.call('HMGET', task_key, 'status', 'id')
local status, id = state[1], state[2]
if not status then return fail_with('NOTFOUND', task_key) end
local now = now_ms()

if status == 'processing' then
  redis.call('HSET', task_key, 'cancel', '1', 'updated_at', int(now))
  emit(events, maxlen, 'cancel_requested', task_key, now)
  redis.call('PUBLISH', channel, id)
  return 'cancelling'
end
if status ~= 'pending' and status ~= 'scheduled' and status ~= 'retrying' then
  return fail_with('STATE', status)
end

redis.call('ZREM', delayed, id)
redis.call('HSET', task_key, 'status', 'cancelled', 'completed_at', int(now),
  'updated_at', int(now))
move(stats, status, 'cancelled')
redis.call('ZADD', finished, int(now), id)
emit(events, maxlen, 'cancelled', task_key, now)
return 'cancelled'
