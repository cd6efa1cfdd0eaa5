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

-- Append one event carrying the task's current public fields to the capped events stream.
local function emit(events, maxlen, kind, task_key, now)
  local values = redis.call('HMGET', task_key, unpack(EVENT_FIELDS))
  local task = {}
  for i, name in ipairs(EVENT_FIELDS) do
    if values[i] then task[name] = values[i] end
  end
  return redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*',
    'kind', kind, 'ts', int(now), 'task', cjson.encode(task))
end

-- Fail with a code that taskd.store translates into an exception.
local function fail_with(code, detail)
  return redis.error_reply('TASKD_' .. code .. ' ' .. detail)
end
