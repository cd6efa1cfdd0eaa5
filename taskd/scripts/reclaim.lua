--[[
  Take back entries whose holder stopped renewing its lease (it died or hung) and hand
  their tasks back to the front of their level, where they were first in line, so recovery
  takes the lease plus one fetch whatever the backlog. A task that was running uses an
  attempt (past max_retries it fails as "worker lost"); one reserved or pending (never
  started) does not.

  KEYS[1]  ready stream    KEYS[2]  stats hash    KEYS[3]  events stream
  KEYS[4]  finished zset   KEYS[5]  dead zset     KEYS[6]  depth hash
  KEYS[7]  front zset      KEYS[8]  history hash  KEYS[9]  history index zset (see
  record_history)

  ARGV[1]  group    ARGV[2]  claiming consumer    ARGV[3]  min idle ms (the lease)
  ARGV[4]  XAUTOCLAIM cursor    ARGV[5]  COUNT    ARGV[6]  task key prefix
  ARGV[7]  events MAXLEN

  Reply: {next cursor, {ids handed back from a holder}, {failed ids}, {entry ids Redis reported deleted}}.
  Events: reclaimed, failed or cancelled per task that was running; released per task
          that was reserved.

  Every claimed entry is acknowledged or handed back (to the HANDBACK consumer) here, so
  the claiming consumer never holds any. Entries already handed back are claimed again
  once idle past the lease and stay at the front: claiming them is harmless.
]]
local stream, stats, events, finished, dead, depth, front =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
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
  flow_ended(tag_of(key), task, status, now, maxlen)
end

-- Back to the front of its level (the entry is claimed, so it cannot be gone).
local function requeue(key, task, sid)
  if task.status == 'pending' then  -- never reserved: it only waits again
    -- One a blocking read delivered (in the depth counter) moves to the front (not in it).
    if not redis.call('ZSCORE', front, task.id) then
      redis.call('HINCRBY', depth, task.priority, -1)
    end
    hand_back(stream, group, front, sid, task.id, task.priority, now)
    return
  end
  hand_back(stream, group, front, sid, task.id, task.priority, now)
  requeued[#requeued + 1] = task.id
  local reason = 'worker lost: ' .. (task.worker or '?') .. ' stopped renewing its lease'
  local was = task.status
  clear(key, task, 'worker')
  if was == 'processing' then
    update(key, task, 'status', 'pending', 'updated_at', int(now),
      'retry_count', tonumber(task.retry_count) + 1, 'error', reason)
    emit_task(events, maxlen, 'reclaimed', task, now)
  else
    update(key, task, 'status', 'pending', 'updated_at', int(now))
    emit_task(events, maxlen, 'released', task, now)
  end
  move(stats, was, 'pending')
end

for _, entry in ipairs(claimed[2]) do
  local sid = entry[1]
  local id = entry_task_id(entry[2])
  local key = prefix .. id
  local task = load_task(key, {'sid', 'cancel', 'children', 'wf_key', 'task_type'})
  local live = task and task.sid == sid and (task.status == 'pending'
    or task.status == 'reserved' or task.status == 'processing')
  if not live then
    redis.call('XACK', stream, group, sid)
  elseif task.status == 'processing' and task.cancel == '1' then
    redis.call('XACK', stream, group, sid)
    finish(key, task, 'cancelled', nil)
  elseif task.status == 'processing'
      and tonumber(task.retry_count) >= tonumber(task.max_retries) then
    redis.call('XACK', stream, group, sid)
    finish(key, task, 'failed', 'worker lost: ' .. (task.worker or '?') ..
      ' stopped renewing its lease')
    redis.call('ZADD', dead, int(now), id)
    redis.call('HINCRBY', stats, 'failed_total', 1)
    failed[#failed + 1] = id
    local counts = {}
    history_add(counts, task.task_type or '', FAILED, 1)
    record_history(KEYS[8], KEYS[9], now, counts)
  else
    requeue(key, task, sid)
  end
end
return {claimed[1], requeued, failed, claimed[3] or {}}
