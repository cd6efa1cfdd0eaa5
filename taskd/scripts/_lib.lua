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

local EVENT_FIELDS = {
  'id', 'name', 'task_type', 'queue', 'priority', 'status', 'progress', 'progress_message',
  'retry_count', 'max_retries', 'attempt', 'worker', 'error', 'created_at', 'updated_at',
  'started_at', 'completed_at', 'run_at', 'timeout_s'
}

-- Append one event carrying the task's public fields (a table name -> value) to the
-- capped events stream.
local function emit_task(events, maxlen, kind, task, now)
  local public = {}
  for _, name in ipairs(EVENT_FIELDS) do
    local value = task[name]
    if value and value ~= '' then public[name] = value end
  end
  return redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*',
    'kind', kind, 'ts', int(now), 'task', cjson.encode(public))
end

-- Read the public fields plus ``extra`` ones of a task into a table (nil if it is gone).
local function load_task(task_key, extra)
  local names = {unpack(EVENT_FIELDS)}
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

-- Set fields on the hash and on the in-memory copy used for the event, in one HSET.
local function update(task_key, task, ...)
  local args = {...}
  for i = 1, #args, 2 do task[args[i]] = tostring(args[i + 1]) end
  redis.call('HSET', task_key, ...)
end

-- Append one event for a task by reading its fields back (for rare transitions).
local function emit(events, maxlen, kind, task_key, now)
  return emit_task(events, maxlen, kind, load_task(task_key) or {}, now)
end

-- Fail with a code that taskd.store translates into an exception.
local function fail_with(code, detail)
  return redis.error_reply('TASKD_' .. code .. ' ' .. detail)
end
