--[[
  Create one queue's share of a workflow: every task as 'waiting' (released by
  wf_start.lua, or by its dependencies' ends). Runs before wf_start.lua for every queue of
  the workflow, so no end ever reaches a child that does not exist yet.

  KEYS[1]  stats hash    KEYS[2]  index zset    KEYS[3]  events stream
  KEYS[4]  last index score
  then for task i (0-based): KEYS[5+2i] its hash, KEYS[6+2i] its unique-key pointer (the
  task hash again when it has none)
  and last:  KEYS[n-1]  history hash,  KEYS[n]  history index zset (see record_history)

  ARGV[1]  events MAXLEN
  then per task: its fields as one JSON object of strings (id, name, task_type, queue,
  priority, payload, max_retries, timeout_s, workflow fields of _flow.lua, unique_key)

  Reply: now ms.
  Events: created (status waiting, with workflow_id and depends_on as JSON), one per task.
  Errors: none; the caller validated every value.
  Cluster: every key it touches arrives in KEYS, all of one queue (one hash tag, so one
  slot; taskd.store.flows builds one call per queue); it builds no key itself
  (tests/test_workflow_slots.py checks both).
]]
local stats, index, events, seq_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local maxlen = ARGV[1]
local count = #ARGV - 1
local counts = {}  -- task type -> history counts
local now = now_ms()
local now_text = int(now)
local base = math.max(now * 1000, tonumber(redis.call('GET', seq_key) or '0') + 1)
redis.call('SET', seq_key, int(base + count - 1))

for i = 0, count - 1 do
  local fields = cjson.decode(ARGV[2 + i])
  local task_key, unique_ptr = KEYS[5 + 2 * i], KEYS[6 + 2 * i]
  local flat = {'status', 'waiting', 'sid', '', 'progress', '0', 'retry_count', '0',
    'attempt', '0', 'created_at', now_text, 'updated_at', now_text}
  for name, value in pairs(fields) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  redis.call('HSET', task_key, unpack(flat))
  -- NX: a plain submit that took the key after the caller found it free keeps it.
  if unique_ptr ~= task_key then redis.call('SET', unique_ptr, fields.id, 'NX') end
  redis.call('ZADD', index, int(base + i), fields.id)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'kind', 'created', 'ts', now_text,
    'id', fields.id, 'status', 'waiting', 'name', fields.name,
    'task_type', fields.task_type, 'queue', fields.queue, 'priority', fields.priority,
    'max_retries', fields.max_retries, 'timeout_s', fields.timeout_s,
    'workflow_id', fields.workflow_id, 'depends_on', fields.depends_on)
  history_add(counts, fields.task_type, SUBMITTED, 1)
end
record_history(KEYS[#KEYS - 1], KEYS[#KEYS], now, counts)
redis.call('HINCRBY', stats, 'total', count)
redis.call('HINCRBY', stats, 'submitted', count)
redis.call('HINCRBY', stats, 'waiting', count)
return now
