--[[
  Send a failed or cancelled task back to pending by hand, with its attempts reset.

  KEYS[1]  task hash     KEYS[2]  stats hash     KEYS[3]  events stream
  KEYS[4]  finished zset KEYS[5]  dead zset      KEYS[6]  ready stream of its priority

  ARGV[1]  events MAXLEN

  Reply: 'pending'.
  Events: retried.
  Errors: TASKD_NOTFOUND, TASKD_STATE <status> (not failed or cancelled).
]]
local task_key, stats, events, finished, dead, stream =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local maxlen = ARGV[1]

local state = redis.call('HMGET', task_key, 'status', 'id')
local status, id = state[1], state[2]
if not status then return fail_with('NOTFOUND', task_key) end
if status ~= 'failed' and status ~= 'cancelled' then return fail_with('STATE', status) end

local now = now_ms()
local sid = redis.call('XADD', stream, '*', 'id', id)
redis.call('HSET', task_key, 'status', 'pending', 'sid', sid, 'retry_count', 0, 'progress', 0,
  'progress_message', '', 'updated_at', int(now))
redis.call('HDEL', task_key, 'completed_at', 'started_at', 'worker', 'cancel', 'result', 'run_at')
redis.call('ZREM', finished, id)
redis.call('ZREM', dead, id)
move(stats, status, 'pending')
emit(events, maxlen, 'retried', task_key, now)
return 'pending'
