--[[
  Create one or more tasks of one queue atomically (a batch is one round trip).

  KEYS[1]  stats hash            KEYS[2]  index zset        KEYS[3]  events stream
  KEYS[4]  delayed zset          KEYS[5]  last index score  KEYS[6]  depth hash
  KEYS[7..16]  ready streams of priority 1..10
  KEYS[17] a periodic schedule's occurrence marker (string, last occurrence ms); any key
           of the queue when ARGV[3] is ''
  then for task i (0-based):  KEYS[18+2i] its hash,  KEYS[19+2i] its unique-key pointer
                              (the task hash again when the task has no unique key)
  and last:  KEYS[n-1]  history hash,  KEYS[n]  history index zset (see record_history)

  ARGV[1]  events MAXLEN    ARGV[2]  task key prefix (the queue's hash tag)
  ARGV[3]  occurrence ms of a periodic schedule ('' = an ordinary submit)
  ARGV[4]  the schedule's next occurrence after ARGV[3] ('' with it)
  then 11 values per task: id, name, task_type, queue, priority, payload (JSON),
           max_retries, timeout_s, delay_ms ('' = none), run_at_ms ('' = none),
           unique_key ('' = none)

  Occurrence mode (ARGV[3] set): the marker check, the tasks and the marker's move are
  one step, so an occurrence is enqueued once however many daemons race or stall. Nothing
  is written when the occurrence is stale (Redis's clock reached the next one: the
  caller looks again) or the marker already reached it; when the schedule has no marker
  yet (its first sight by any daemon), the marker is set to this occurrence and nothing
  is enqueued: the first occurrence that runs is the next one.

  Reply: {now ms, then per task either {1, status, stream entry id, due ms or ''} when
         created, or {0, the existing task's HGETALL} when its unique key already names a
         live task}; just {now ms} when an occurrence was not enqueued.
  Events: created (one per new task). Its defaults are left out (readers restore them):
          progress, retry_count and attempt 0, created_at and updated_at = ts, run_at ''.
  Errors: none; the caller validated every value.
]]
local stats, index, events, delayed, seq_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local depth = KEYS[6]
local hist, hist_index = KEYS[#KEYS - 1], KEYS[#KEYS]
local maxlen, prefix = ARGV[1], ARGV[2]
local marker, occurrence, next_occurrence = KEYS[17], ARGV[3], ARGV[4]
local per_task = 11
local count = (#ARGV - 4) / per_task
local now = now_ms()
local now_text = int(now)

if occurrence ~= '' then
  if now >= tonumber(next_occurrence) then return {now} end
  local seen = redis.call('GET', marker)
  if seen and tonumber(seen) >= tonumber(occurrence) then return {now} end
  redis.call('SET', marker, occurrence)
  if not seen then return {now} end
end
-- Index scores are created ms * 1000, strictly increasing: tasks created in one millisecond
-- keep their creation order (a burst of more than 1000 in a millisecond runs ahead).
local base = math.max(now * 1000, tonumber(redis.call('GET', seq_key) or '0') + 1)
redis.call('SET', seq_key, int(base + count - 1))
local reply = {now}
local created = {pending = 0, scheduled = 0}
local ready = {}
local indexed = {}  -- score, id, ...: one ZADD per batch
local counts = {}  -- task type -> history counts

for i = 0, count - 1 do
  local a = 5 + i * per_task
  local id, name, task_type, queue = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local priority = ARGV[a + 4]
  local payload, max_retries, timeout_s = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
  local delay_ms, run_at_ms, unique_key = ARGV[a + 8], ARGV[a + 9], ARGV[a + 10]
  local task_key, unique_ptr = KEYS[18 + 2 * i], KEYS[19 + 2 * i]

  local existing = false
  if unique_key ~= '' then existing = redis.call('GET', unique_ptr) end

  if existing then
    reply[#reply + 1] = {0, redis.call('HGETALL', prefix .. existing)}
  else
    local due = nil
    if delay_ms ~= '' then due = now + tonumber(delay_ms) end
    if run_at_ms ~= '' then due = tonumber(run_at_ms) end
    local status, sid = 'pending', ''
    if due and due > now then
      status = 'scheduled'
      redis.call('ZADD', delayed, int(due), id)
    else
      sid = redis.call('XADD', KEYS[6 + tonumber(priority)], '*', 'id', id)
      ready[priority] = (ready[priority] or 0) + 1
    end
    local fields = {
      'id', id, 'name', name, 'task_type', task_type, 'queue', queue,
      'priority', priority, 'payload', payload, 'status', status, 'sid', sid,
      'progress', '0', 'retry_count', '0', 'max_retries', max_retries,
      'timeout_s', timeout_s, 'created_at', now_text, 'updated_at', now_text, 'attempt', '0'
    }
    if due then
      fields[#fields + 1] = 'run_at'
      fields[#fields + 1] = int(due)
    end
    if unique_key ~= '' then
      redis.call('SET', unique_ptr, id)
      fields[#fields + 1] = 'unique_key'
      fields[#fields + 1] = unique_key
    end
    redis.call('HSET', task_key, unpack(fields))
    indexed[#indexed + 1] = int(base + i)
    indexed[#indexed + 1] = id
    created[status] = created[status] + 1
    history_add(counts, task_type, SUBMITTED, 1)
    local event = {events, 'MAXLEN', '~', maxlen, '*', 'kind', 'created', 'ts', now_text,
      'id', id, 'status', status, 'name', name, 'task_type', task_type, 'queue', queue,
      'priority', priority, 'max_retries', max_retries, 'timeout_s', timeout_s}
    if due then
      event[#event + 1] = 'run_at'
      event[#event + 1] = int(due)
    end
    redis.call('XADD', unpack(event))
    reply[#reply + 1] = {1, status, sid, due and int(due) or ''}
  end
end

for first = 1, #indexed, 1000 do  -- (unpack has a stack limit)
  redis.call('ZADD', index, unpack(indexed, first, math.min(first + 999, #indexed)))
end
for priority, n in pairs(ready) do redis.call('HINCRBY', depth, priority, n) end
local total = created.pending + created.scheduled
if total > 0 then
  redis.call('HINCRBY', stats, 'total', total)
  redis.call('HINCRBY', stats, 'submitted', total)
  if created.pending > 0 then redis.call('HINCRBY', stats, 'pending', created.pending) end
  if created.scheduled > 0 then redis.call('HINCRBY', stats, 'scheduled', created.scheduled) end
  record_history(hist, hist_index, now, counts)
end
return reply
