--[[
  Hand a held task back to its queue on graceful shutdown: not an attempt, no back-off, so
  another worker can start it at once instead of waiting for the lease to expire.

  KEYS[1]  task hash    KEYS[2]  ready stream of its priority
  KEYS[3]  stats hash   KEYS[4]  events stream    KEYS[5]  finished zset

  ARGV[1]  group    ARGV[2]  attempt    ARGV[3]  stream entry id    ARGV[4]  events MAXLEN

  Reply: 'pending', or 'cancelled' when a cancellation was requested meanwhile.
  Events: released or cancelled.
  Errors: TASKD_NOTFOUND, TASKD_STALE.
]]
local task_key, stream, stats, events, finished = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, attempt, sid, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local state = redis.call('HMGET', task_key, 'status', 'attempt', 'sid', 'id', 'cancel')
if not state[1] then return fail_with('NOTFOUND', task_key) end
if state[1] ~= 'processing' or state[2] ~= attempt or state[3] ~= sid then
  return fail_with('STALE', state[4] .. ' ' .. attempt)
end

local id = state[4]
local now = now_ms()
redis.call('XACK', stream, group, sid)
if state[5] == '1' then
  redis.call('HSET', task_key, 'status', 'cancelled', 'completed_at', int(now),
    'updated_at', int(now))
  redis.call('ZADD', finished, int(now), id)
  move(stats, 'processing', 'cancelled')
  emit(events, maxlen, 'cancelled', task_key, now)
  return 'cancelled'
end
local new_sid = redis.call('XADD', stream, '*', 'id', id)
redis.call('HSET', task_key, 'status', 'pending', 'sid', new_sid, 'progress', 0,
  'progress_message', '', 'updated_at', int(now))
redis.call('HDEL', task_key, 'worker')
move(stats, 'processing', 'pending')
emit(events, maxlen, 'released', task_key, now)
return 'pending'
