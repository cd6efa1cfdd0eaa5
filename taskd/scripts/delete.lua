--[[
  Delete one finished task at once (by hand, before its retention runs out), with its index
  entries and unique-key pointer, keeping the per-status counters exact.

  KEYS[1]  task hash      KEYS[2]  stats hash     KEYS[3]  index zset
  KEYS[4]  finished zset  KEYS[5]  dead zset      KEYS[6]  events stream
  KEYS[7]  its unique-key pointer (the task hash again when it has none)

  ARGV[1]  events MAXLEN

  Reply: the status the task had ('completed', 'failed' or 'cancelled').
  Events: deleted (carrying the task's last fields).
  Errors: TASKD_NOTFOUND, TASKD_STATE <status> (not finished: cancel it first).
]]
local task_key, stats, index, finished, dead, events, unique_ptr =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local maxlen = ARGV[1]

local state = redis.call('HMGET', task_key, 'status', 'id', 'unique_key')
local status, id, unique_key = state[1], state[2], state[3]
if not status then return fail_with(CODE.NOTFOUND, task_key) end
if status ~= 'completed' and status ~= 'failed' and status ~= 'cancelled' then
  return fail_with(CODE.STATE, status)
end

local now = now_ms()
emit(events, maxlen, 'deleted', task_key, now)
if unique_key and unique_key ~= '' and unique_ptr ~= task_key then
  if redis.call('GET', unique_ptr) == id then redis.call('DEL', unique_ptr) end
end
redis.call('DEL', task_key)
redis.call('ZREM', index, id)
redis.call('ZREM', finished, id)
redis.call('ZREM', dead, id)
move(stats, status, nil)
redis.call('HINCRBY', stats, 'total', -1)
return status
