--[[
  Move scheduled and retrying tasks whose due time has come into their ready stream.

  KEYS[1]  delayed zset    KEYS[2]  stats hash    KEYS[3]  events stream
  KEYS[4]  depth hash      KEYS[5..14]  ready streams of priority 1..10

  ARGV[1]  max tasks to move    ARGV[2]  task key prefix (queue hash tag)
  ARGV[3]  events MAXLEN

  Reply: {moved, ms until the next due task or -1 when none}.
  Events: queued (one per moved task).
]]
local delayed, stats, events, depth = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local limit, prefix, maxlen = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local now = now_ms()
local moved = 0

local due = redis.call('ZRANGE', delayed, '-inf', int(now), 'BYSCORE', 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  local key = prefix .. id
  local task = load_task(key)
  if task and (task.status == 'scheduled' or task.status == 'retrying') then
    local sid = redis.call('XADD', KEYS[4 + tonumber(task.priority)], '*', 'id', id)
    redis.call('HINCRBY', depth, task.priority, 1)
    local was = task.status
    update(key, task, 'status', 'pending', 'sid', sid, 'updated_at', int(now))
    move(stats, was, 'pending')
    emit_task(events, maxlen, 'queued', task, now)
    moved = moved + 1
  end
end

local next_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if #next_due == 0 then return {moved, -1} end
return {moved, math.max(0, tonumber(next_due[2]) - now)}
