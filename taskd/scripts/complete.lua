--[[
  Record the successful end of one attempt.

  KEYS[1]  task hash    KEYS[2]  ready stream of the task's priority
  KEYS[3]  stats hash   KEYS[4]  events stream    KEYS[5]  finished zset

  ARGV[1]  group    ARGV[2]  attempt    ARGV[3]  stream entry id
  ARGV[4]  result (JSON)    ARGV[5]  events MAXLEN

  Reply: 'completed'.
  Events: completed.
  Errors: TASKD_NOTFOUND (no such task), TASKD_STALE (the attempt is not the one held:
          the caller was presumed dead and the task moved on; nothing is written).
]]
local task_key, stream, stats, events, finished = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, attempt, sid, result, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local state = redis.call('HMGET', task_key, 'status', 'attempt', 'sid', 'id')
if not state[1] then return fail_with('NOTFOUND', task_key) end
if state[1] ~= 'processing' or state[2] ~= attempt or state[3] ~= sid then
  return fail_with('STALE', state[4] .. ' ' .. attempt)
end

local now = now_ms()
redis.call('XACK', stream, group, sid)
redis.call('HSET', task_key, 'status', 'completed', 'progress', 100, 'result', result,
  'completed_at', int(now), 'updated_at', int(now))
redis.call('HDEL', task_key, 'cancel')
move(stats, 'processing', 'completed')
redis.call('HINCRBY', stats, 'completed_total', 1)
redis.call('ZADD', finished, int(now), state[4])
emit(events, maxlen, 'completed', task_key, now)
return 'completed'
