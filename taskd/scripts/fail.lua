--[[
  Record the unsuccessful end of one attempt: retry after a back-off, fail for good, or
  confirm a cooperative cancellation.

  KEYS[1]  task hash      KEYS[2]  ready stream of the task's priority
  KEYS[3]  stats hash     KEYS[4]  events stream     KEYS[5]  finished zset
  KEYS[6]  delayed zset   KEYS[7]  dead zset
  KEYS[8]  history hash   KEYS[9]  history index zset (see record_history)

  ARGV[1]  group    ARGV[2]  attempt    ARGV[3]  stream entry id    ARGV[4]  error text
  ARGV[5]  mode: 'retry' (retry if attempts remain), 'fail' (never retry), 'cancel'
  ARGV[6]  back-off delay in ms (mode 'retry')    ARGV[7]  events MAXLEN

  Reply: the new status ('retrying', 'failed' or 'cancelled'); writing the same attempt's
         end again (its reply was lost) answers the status the first write set.
  Events: retrying, failed or cancelled (and the workflow dependents' ends, _flow.lua).
  Errors: TASKD_NOTFOUND, TASKD_STALE (see complete.lua).
]]
local task_key, stream, stats, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local finished, delayed, dead = KEYS[5], KEYS[6], KEYS[7]
local group, attempt, sid, err, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local delay_ms, maxlen = tonumber(ARGV[6]), ARGV[7]

local task = load_task(task_key, {'sid', 'cancel', 'task_type', 'children', 'wf_key'})
if not task then return fail_with(CODE.NOTFOUND, task_key) end
if task.attempt ~= attempt or task.sid ~= sid then
  return fail_with(CODE.STALE, task.id .. ' ' .. attempt)
end
if task.status == 'retrying' or task.status == 'failed' or task.status == 'cancelled' then
  return task.status  -- this attempt's end was written before; that reply was lost
end
if task.status ~= 'processing' then return fail_with(CODE.STALE, task.id .. ' ' .. attempt) end

local retries, max_retries = tonumber(task.retry_count), tonumber(task.max_retries)
local now = now_ms()
redis.call('XACK', stream, group, sid)

local status
if mode == 'cancel' or task.cancel == '1' then
  status = 'cancelled'
elseif mode == 'retry' and retries < max_retries then
  status = 'retrying'
else
  status = 'failed'
end

if status == 'retrying' then
  local due = now + delay_ms
  update(task_key, task, 'status', 'retrying', 'error', err, 'retry_count', retries + 1,
    'run_at', int(due), 'updated_at', int(now))
  redis.call('ZADD', delayed, int(due), task.id)
else
  update(task_key, task, 'status', status, 'error', err, 'completed_at', int(now),
    'updated_at', int(now))
  redis.call('ZADD', finished, int(now), task.id)
  if status == 'failed' then
    redis.call('ZADD', dead, int(now), task.id)
    redis.call('HINCRBY', stats, 'failed_total', 1)
    local counts = {}
    history_add(counts, task.task_type or '', FAILED, 1)
    record_history(KEYS[8], KEYS[9], now, counts)
  end
end
move(stats, 'processing', status)
emit_task(events, maxlen, status, task, now)
if status ~= 'retrying' then flow_ended(tag_of(task_key), task, status, now, maxlen) end
return status
