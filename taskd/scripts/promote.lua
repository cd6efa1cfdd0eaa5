--[[
  Move scheduled and retrying tasks whose due time has come into their ready stream.

  KEYS[1]  delayed zset    KEYS[2]  stats hash    KEYS[3]  events stream
  KEYS[4..13]  ready streams of priority 1..10

  ARGV[1]  max tasks to move    ARGV[2]  task key prefix (queue hash tag)
  ARGV[3]  events MAXLEN

  Reply: {moved, ms until the next due task or -1 when none}.
  Events: queued (one per moved task).
]]
local delayed, stats, events = KEYS[1], KEYS[2], KEYS[3]
local limit, prefix, maxlen = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local now = now_ms()
local moved = 0

local due = redis.call('ZRANGE', delayed, '-inf', int(now), 'BYSCORE', 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  local key = prefix .. id
  local state = redis.call('HMGET', key, 'status', 'priority')
  if state[1] == 'scheduled' or state[1] == 'retrying' then
    local sid = redis.call('XADD', KEYS[3 + tonumber(state[2])], '*', 'id', id)
    redis.call('HSET', key, 'status', 'pending', 'sid', sid, 'updated_at', int(now))
    move(stats, state[1], 'pending')
    emit(events, maxlen, 'queued', key, now)
    moved = moved + 1
  end
end

local next_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if #next_due == 0 then return {moved, -1} end
return {moved, math.max(0, tonumber(next_due[2]) - now)}
