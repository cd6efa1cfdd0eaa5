--[[
  Shared prelude, prepended to every taskd script when it is loaded (not a script itself).

  Time comes from Redis (TIME), never from the daemons, so lease, due-time and retention
  decisions agree however the hosts' clocks drift.
]]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers beyond 1e14 lose digits in Lua's default number formatting.
local function int(x)
  return string.format('%.0f', x)
end

-- Keep the per-status counters of the stats hash exactly consistent.
local function move(stats, from, to)
  if from then redis.call('HINCRBY', stats, from, -1) end
  if to then redis.call('HINCRBY', stats, to, 1) end
end

-- Fields an event may carry; internal ones (sid, cancel, rl, payload, result) never.
local PUBLIC = {
  id = true, name = true, task_type = true, queue = true, priority = true, status = true,
  progress = true, progress_message = true, retry_count = true, max_retries = true,
  attempt = true, worker = true, error = true, created_at = true, updated_at = true,
  started_at = true, completed_at = true, run_at = true, timeout_s = true
}
-- What scripts need to decide a transition; events carry only what changed.
local STATE_FIELDS = {'id', 'status', 'progress', 'attempt', 'priority', 'retry_count',
  'max_retries', 'worker'}

-- Append one event: its kind, the task's id, status and progress, and the public fields
-- this script changed (update() records them). Events are deltas, merged by readers into
-- what they know of the task: small entries keep the stream, the AOF and the relay cheap.
local function emit_task(events, maxlen, kind, task, now)
  local args = {events, 'MAXLEN', '~', maxlen, '*', 'kind', kind, 'ts', int(now),
    'id', task.id, 'status', task.status, 'progress', task.progress or '0'}
  for name in pairs(task._changed or {}) do
    if PUBLIC[name] and name ~= 'id' and name ~= 'status' and name ~= 'progress' then
      args[#args + 1] = name
      args[#args + 1] = task[name] or ''
    end
  end
  return redis.call('XADD', unpack(args))
end

-- Read what transitions need plus ``extra`` fields of a task (nil if it is gone).
local function load_task(task_key, extra)
  local names = {unpack(STATE_FIELDS)}
  for _, name in ipairs(extra or {}) do names[#names + 1] = name end
  local values = redis.call('HMGET', task_key, unpack(names))
  if not values[1] then return nil end
  local task = {}
  for i, name in ipairs(names) do
    if values[i] then task[name] = values[i] end
  end
  return task
end

-- A table from an HGETALL reply.
local function from_flat(flat)
  local task = {}
  for i = 1, #flat, 2 do task[flat[i]] = flat[i + 1] end
  return task
end

-- Set fields on the hash and on the in-memory copy, noting them for the event; one HSET.
local function update(task_key, task, ...)
  local args = {...}
  task._changed = task._changed or {}
  for i = 1, #args, 2 do
    task[args[i]] = tostring(args[i + 1])
    task._changed[args[i]] = true
  end
  redis.call('HSET', task_key, ...)
end

-- Forget fields (HDEL) on the hash and the copy; the event carries them as ''.
local function clear(task_key, task, ...)
  task._changed = task._changed or {}
  for _, name in ipairs({...}) do
    task[name] = nil
    task._changed[name] = true
  end
  redis.call('HDEL', task_key, ...)
end

-- Append one event for a task by reading its state back (for rare transitions).
local function emit(events, maxlen, kind, task_key, now)
  return emit_task(events, maxlen, kind, load_task(task_key) or {id = '', status = ''}, now)
end

-- The one table of reply codes; taskd/store/replies.py mirrors it and maps each to its
-- exception. Scripts fail with ``fail_with(CODE.X, detail)`` (an error reply
-- 'TASKD_X detail'); batch scripts answer an item that cannot be done with ``CODE.X``
-- itself in that item's place.
local CODE = {
  STALE = 'TASKD_STALE',        -- the attempt is no longer the one held (fencing)
  NOTFOUND = 'TASKD_NOTFOUND',  -- no such task
  STATE = 'TASKD_STATE',        -- not allowed in the task's status
}

-- Fail with a code that taskd.store translates into an exception.
local function fail_with(code, detail)
  if string.sub(code, 1, 6) ~= 'TASKD_' then code = 'TASKD_' .. code end  -- 'STATE' too
  return redis.error_reply(code .. ' ' .. detail)
end

-- Handed-back entries wait in the front zset, most urgent level first, FIFO within one.
-- The group consumer HANDBACK holds their entries meanwhile (taskd.keys.HANDBACK).
local FRONT_BAND = 1e13
local HANDBACK = 'taskd:front'

local function front_score(priority, now)
  return (10 - tonumber(priority)) * FRONT_BAND + now
end

-- Put a delivered entry back at the front of its level: its place in line is kept, and
-- the next fetch of any worker takes it before the level's stream. False when the entry
-- is gone from the stream (deleted), so the caller must queue the task anew.
local function hand_back(stream, group, front, sid, task_id, priority, now)
  local claimed = redis.call('XCLAIM', stream, group, HANDBACK, 0, sid, 'JUSTID')
  if #claimed == 0 then return false end
  redis.call('ZADD', front, 'NX', front_score(priority, now), task_id)
  return true
end

--[[
  Per-minute history (read by taskd.store.history; the layout is taskd.history's).
  One field of the history hash per minute and task type, '<minute>:<task type>', holding
  'submitted,completed,failed,h1,...,hN': counts, then the completions' run-time histogram
  over RUN_BOUNDS_MS (trailing zeros left out). The index zset names every field with its
  minute as score, so each new field drops up to 8 older than HISTORY_MINUTES: memory is
  bounded by what 8 days of traffic writes, and an idle queue's history expires whole.
]]
local HISTORY_MINUTES = 11520
local HISTORY_TTL_S = 691200
local RUN_BOUNDS_MS = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000,
  50000, 100000, 200000, 500000, 1000000}
local SUBMITTED, COMPLETED, FAILED = 1, 2, 3

-- Count ``n`` into ``slot`` (SUBMITTED, COMPLETED, FAILED) of a task type's minute.
local function history_add(counts, task_type, slot, n)
  local add = counts[task_type] or {0, 0, 0}
  counts[task_type] = add
  add[slot] = (add[slot] or 0) + n
end

-- Count one completion and its run time (ms) into the histogram.
local function history_run(counts, task_type, run_ms)
  history_add(counts, task_type, COMPLETED, 1)
  local slot = FAILED + #RUN_BOUNDS_MS + 1
  for i, bound in ipairs(RUN_BOUNDS_MS) do
    if run_ms <= bound then slot = FAILED + i break end
  end
  history_add(counts, task_type, slot, 1)
end

-- Add ``counts`` (task type -> {submitted, completed, failed, h1, ...}) to minute ``now``.
local function record_history(hist, hist_index, now, counts)
  local minute = int(math.floor(now / 60000))
  for task_type, add in pairs(counts) do
    local field = minute .. ':' .. task_type
    local values = {}
    local packed = redis.call('HGET', hist, field)
    if packed then
      for n in string.gmatch(packed, '%d+') do values[#values + 1] = tonumber(n) end
    else
      redis.call('ZADD', hist_index, minute, field)
      local old = redis.call('ZRANGEBYSCORE', hist_index, '-inf',
        '(' .. int(tonumber(minute) - HISTORY_MINUTES), 'LIMIT', 0, 8)
      if #old > 0 then
        redis.call('HDEL', hist, unpack(old))
        redis.call('ZREM', hist_index, unpack(old))
      end
      redis.call('EXPIRE', hist_index, HISTORY_TTL_S)
    end
    local size = math.max(#values, 3)
    for slot in pairs(add) do size = math.max(size, slot) end
    for i = 1, size do values[i] = int((values[i] or 0) + (add[i] or 0)) end
    while #values > 3 and values[#values] == '0' do values[#values] = nil end
    redis.call('HSET', hist, field, table.concat(values, ','))
    if not packed then redis.call('EXPIRE', hist, HISTORY_TTL_S) end
  end
end
