--[[
  Take back entries whose holder stopped renewing its lease (it died or hung) and re-queue
  their tasks: a redelivery counts as an attempt, and past max_retries the task fails as
  "worker lost".

  KEYS[1]  ready stream    KEYS[2]  stats hash    KEYS[3]  events stream
  KEYS[4]  finished zset   KEYS[5]  dead zset     KEYS[6]  depth hash
  KEYS[7]  history hash    KEYS[8]  history index zset (see record_history)

  ARGV[1]  group    ARGV[2]  claiming consumer    ARGV[3]  min idle ms (the lease)
  ARGV[4]  XAUTOCLAIM cursor    ARGV[5]  COUNT    ARGV[6]  task key prefix
  ARGV[7]  events MAXLEN

  Reply: {next cursor, {re-queued ids}, {failed ids}, {entry ids Redis reported deleted}}.
  Events: reclaimed, failed or cancelled per task.

  Every claimed entry is acknowledged here, so the claiming consumer never holds any.
]]
local stream, stats, events, finished, dead, depth =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
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

local function finish(key, task, status, reason)
  update(key, task, 'status', status, 'completed_at', int(now), 'updated_at', int(now))
  if reason then update(key, task, 'error', reason) end
  redis.call('ZADD', finished, int(now), task.id)
  move(stats, 'processing', status)
  emit_task(events, maxlen, status, task, now)
end

for _, entry in ipairs(claimed[2]) do
  local sid = entry[1]
  local id = entry_task_id(entry[2])
  local key = prefix .. id
  redis.call('XACK', stream, group, sid)
  local task = load_task(key, {'sid', 'cancel', 'task_type'})
  if task and task.sid == sid and (task.status == 'pending' or task.status == 'processing') then
    local reason = 'worker lost: ' .. (task.worker or '?') .. ' stopped renewing its lease'
    if task.status == 'processing' and task.cancel == '1' then
      finish(key, task, 'cancelled', nil)
    elseif task.status == 'processing' and tonumber(task.retry_count) >= tonumber(task.max_retries) then
      finish(key, task, 'failed', reason)
      redis.call('ZADD', dead, int(now), id)
      redis.call('HINCRBY', stats, 'failed_total', 1)
      failed[#failed + 1] = id
      local counts = {}
      history_add(counts, task.task_type or '', FAILED, 1)
      record_history(KEYS[7], KEYS[8], now, counts)
    else
      -- A pending status here means delivered but never started: hand back, no attempt used.
      local new_sid = redis.call('XADD', stream, '*', 'id', id)
      redis.call('HINCRBY', depth, task.priority, 1)
      if task.status == 'processing' then
        clear(key, task, 'worker')
        update(key, task, 'status', 'pending', 'sid', new_sid, 'updated_at', int(now),
          'retry_count', tonumber(task.retry_count) + 1, 'error', reason)
        move(stats, 'processing', 'pending')
        emit_task(events, maxlen, 'reclaimed', task, now)
      else
        update(key, task, 'sid', new_sid, 'updated_at', int(now))
      end
      requeued[#requeued + 1] = id
    end
  end
end
return {claimed[1], requeued, failed, claimed[3] or {}}
