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

-- Record successful attempts (complete.lua, and completions sent along with a fetch).
-- ``items``: {task hash, its ready stream, attempt, stream entry id, result JSON} each.
-- Returns per item 'completed', 'stale' (not the attempt held: nothing written) or
-- 'missing'. One XACK per stream and one ZADD for the batch.
local function complete_tasks(stats, events, finished, maxlen, group, now, items)
  local reply, acks, finished_args, done = {}, {}, {}, 0
  local now_text = int(now)
  for _, item in ipairs(items) do
    local task_key, stream, attempt, sid, result = item[1], item[2], item[3], item[4], item[5]
    local state = redis.call('HMGET', task_key, 'status', 'attempt', 'sid', 'id', 'cancel')
    if not state[1] then
      reply[#reply + 1] = 'missing'
    elseif state[1] ~= 'processing' or state[2] ~= attempt or state[3] ~= sid then
      reply[#reply + 1] = 'stale'
    else
      acks[stream] = acks[stream] or {}
      table.insert(acks[stream], sid)
      local task = {id = state[4], status = 'processing', progress = '0'}
      update(task_key, task, 'status', 'completed', 'progress', '100', 'result', result,
        'completed_at', now_text, 'updated_at', now_text)
      if state[5] then redis.call('HDEL', task_key, 'cancel') end
      finished_args[#finished_args + 1] = now_text
      finished_args[#finished_args + 1] = state[4]
      emit_task(events, maxlen, 'completed', task, now)
      done = done + 1
      reply[#reply + 1] = 'completed'
    end
  end
  for stream, sids in pairs(acks) do redis.call('XACK', stream, group, unpack(sids)) end
  if done > 0 then
    redis.call('ZADD', finished, unpack(finished_args))
    redis.call('HINCRBY', stats, 'processing', -done)
    redis.call('HINCRBY', stats, 'completed', done)
    redis.call('HINCRBY', stats, 'completed_total', done)
  end
  return reply
end

-- Fail with a code that taskd.store translates into an exception.
local function fail_with(code, detail)
  return redis.error_reply('TASKD_' .. code .. ' ' .. detail)
end
