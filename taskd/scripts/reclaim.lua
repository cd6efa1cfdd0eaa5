--[[
  Take back entries whose holder stopped renewing its lease (it died or hung) and re-queue
  their tasks: a redelivery counts as an attempt, and past max_retries the task fails as
  "worker lost".

  KEYS[1]  ready stream    KEYS[2]  stats hash    KEYS[3]  events stream
  KEYS[4]  finished zset   KEYS[5]  dead zset

  ARGV[1]  group    ARGV[2]  claiming consumer    ARGV[3]  min idle ms (the lease)
  ARGV[4]  XAUTOCLAIM cursor    ARGV[5]  COUNT    ARGV[6]  task key prefix
  ARGV[7]  events MAXLEN

  Reply: {next cursor, {re-queued ids}, {failed ids}, {entry ids Redis reported deleted}}.
  Events: reclaimed, failed or cancelled per task.

  Every claimed entry is acknowledged here, so the claiming consumer never holds any.
]]
local stream, stats, events, finished, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, consumer, min_idle = ARGV[1], ARGV[2], ARGV[3]
local cursor, count, prefix, maxlen = ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local claimed = redis.pcall('XAUTOCLAIM', stream, group, consumer, min_idle, cursor, 'COUNT', count)
if type(claimed) == 'table' and claimed.err then
  -- A queue whose streams were never created (or were flushed) has nothing to reclaim.
  if string.find(claimed.err, 'NOGROUP') then return {'0-0', {}, {}, {}} end
  return claimed
end
local now = now_ms()
local requeued, failed = {}, {}

local function entry_task_id(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then return fields[i + 1] end
  end
  return ''
end

for _, entry in ipairs(claimed[2]) do
  local sid = entry[1]
  local id = entry_task_id(entry[2])
  local key = prefix .. id
  redis.call('XACK', stream, group, sid)
  local s = redis.call('HMGET', key, 'status', 'sid', 'retry_count', 'max_retries', 'worker',
    'cancel')
  local status = s[1]
  if status and s[2] == sid and (status == 'pending' or status == 'processing') then
    local reason = 'worker lost: ' .. (s[5] or '?') .. ' stopped renewing its lease'
    if status == 'processing' and s[6] == '1' then
      redis.call('HSET', key, 'status', 'cancelled', 'completed_at', int(now),
        'updated_at', int(now))
      redis.call('ZADD', finished, int(now), id)
      move(stats, 'processing', 'cancelled')
      emit(events, maxlen, 'cancelled', key, now)
    elseif status == 'processing' and tonumber(s[3]) >= tonumber(s[4]) then
      redis.call('HSET', key, 'status', 'failed', 'error', reason, 'completed_at', int(now),
        'updated_at', int(now))
      redis.call('ZADD', finished, int(now), id)
      redis.call('ZADD', dead, int(now), id)
      redis.call('HINCRBY', stats, 'failed_total', 1)
      move(stats, 'processing', 'failed')
      emit(events, maxlen, 'failed', key, now)
      failed[#failed + 1] = id
    else
      -- A pending status here means delivered but never started: hand back, no attempt used.
      local new_sid = redis.call('XADD', stream, '*', 'id', id)
      redis.call('HSET', key, 'status', 'pending', 'sid', new_sid, 'updated_at', int(now))
      if status == 'processing' then
        redis.call('HSET', key, 'retry_count', tonumber(s[3]) + 1, 'error', reason)
        redis.call('HDEL', key, 'worker')
        move(stats, 'processing', 'pending')
        emit(events, maxlen, 'reclaimed', key, now)
      end
      requeued[#requeued + 1] = id
    end
  end
end
return {claimed[1], requeued, failed, claimed[3] or {}}
