--[[
  Create one plain task: the single submit, as a web handler or a script makes it.

  The same writes as enqueue.lua for one task without unique key, delay or run_at, in
  straight-line code with only the keys it touches: a per-call submit pays for the
  script's execution on every call, and enqueue.lua's batch machinery (tables per task,
  ten stream keys, the occurrence check) cost a fifth of it.

  KEYS[1]  stats hash      KEYS[2]  index zset    KEYS[3]  events stream
  KEYS[4]  last index score                       KEYS[5]  depth hash
  KEYS[6]  the ready stream of the task's priority  KEYS[7]  the task hash
  KEYS[8]  history hash    KEYS[9]  history index zset (see record_history)

  ARGV  events MAXLEN, id, name, task_type, queue, priority, payload (JSON), max_retries,
        timeout_s

  Reply: {now ms, {1, 'pending', stream entry id, ''}} (enqueue.lua's reply for one
         created task).
  Events: created, as enqueue.lua writes it.
  Errors: none; the caller validated every value.
]]
local now = now_ms()
local now_text = int(now)
local maxlen, id, name, task_type = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local queue, priority, max_retries, timeout_s = ARGV[5], ARGV[6], ARGV[8], ARGV[9]

-- The index score: created ms * 1000, strictly increasing (as in enqueue.lua).
local score = now * 1000
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
if last >= score then score = last + 1 end
score = int(score)
redis.call('SET', KEYS[4], score)

local sid = redis.call('XADD', KEYS[6], '*', 'id', id)
redis.call('HSET', KEYS[7], 'id', id, 'name', name, 'task_type', task_type, 'queue', queue,
  'priority', priority, 'payload', ARGV[7], 'status', 'pending', 'sid', sid,
  'progress', '0', 'retry_count', '0', 'max_retries', max_retries, 'timeout_s', timeout_s,
  'created_at', now_text, 'updated_at', now_text, 'attempt', '0')
redis.call('ZADD', KEYS[2], score, id)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'kind', 'created', 'ts', now_text,
  'id', id, 'status', 'pending', 'name', name, 'task_type', task_type, 'queue', queue,
  'priority', priority, 'max_retries', max_retries, 'timeout_s', timeout_s)
redis.call('HINCRBY', KEYS[5], priority, 1)
redis.call('HINCRBY', KEYS[1], 'total', 1)
redis.call('HINCRBY', KEYS[1], 'submitted', 1)
redis.call('HINCRBY', KEYS[1], 'pending', 1)
local counts = {}
history_add(counts, task_type, SUBMITTED, 1)
record_history(KEYS[8], KEYS[9], now, counts)
return {now, {1, 'pending', sid, ''}}
