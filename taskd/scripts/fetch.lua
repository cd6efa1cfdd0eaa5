--[[
  Reserve up to COUNT ready tasks for one consumer, most urgent priority first, FIFO within
  a level; handed-back tasks (the front zset) go before their level's stream. Reserved
  means held by this consumer, not started: the runner starts it with begin.lua. The
  first ARGV[8] of them go to idle runners and start here instead. Also
  takes entries a blocking XREADGROUP already delivered to this consumer, up to COUNT in
  all; the ones beyond it are handed back to the front of their level, not reserved.
  Honours the queue's pause flag (entries a blocking read delivered after the pause go back
  to the end of their level) and its shared rate limits.

  KEYS[1]  stats hash    KEYS[2]  events stream    KEYS[3]  depth hash
  KEYS[4]  paused flag   KEYS[5]  rate-limit hash  KEYS[6]  delayed zset
  KEYS[7..16]  ready streams of priority 10 down to 1
  KEYS[17] front zset

  ARGV[1]  group           ARGV[2]  consumer       ARGV[3]  count
  ARGV[4]  events MAXLEN   ARGV[5]  task key prefix (carries the queue's hash tag, so
                                     every task hash lives in this script's slot)
  ARGV[6]  rate limits as JSON {scope: [interval ms, tolerance ms]}, scope 'queue' or
           'type:<task type>'; '' when none
  ARGV[7]  task types this consumer runs, as a JSON list; '' when it runs any. A task of
           another type is handed back to the front (not reserved, no attempt used), where
           a worker that runs it takes it first.
  ARGV[8]  how many of the tasks taken to start at once (reserved -> processing in this
           same step): the consumer has that many idle runners, so those tasks skip the
           reserved state and begin.lua's round trip; the rest are reserved
  ARGV[9..]  pre-delivered entries as triples: stream position (1 = KEYS[7]), entry id,
             task id

  Reply: {1 if the queue is paused else 0, {one flat HGETALL array per task taken}}; a
         task started at once has status 'processing' and its started_at.
  Events: started per task started at once, reserved per task reserved; rate_limited per
          task deferred by a rate limit.

  The depth hash counts undelivered stream entries per priority (not the front zset), so
  empty levels cost nothing; every entry this script takes out of a stream (read here or
  by the blocking read) is subtracted once. An entry whose task is gone, no longer
  pending, or was re-queued under a newer entry is acknowledged and skipped: it is a
  leftover, not work. Rate limits are a generic cell rate algorithm over Redis time: a
  task over the limit is deferred to the delayed zset at the slot it reserved, so every
  daemon together starts at most the configured rate.
]]
local stats, events, depth, paused, limits_key, delayed =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local group, consumer, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local maxlen, prefix = ARGV[4], ARGV[5]
local front = KEYS[17]
local limits = nil
if ARGV[6] ~= '' then limits = cjson.decode(ARGV[6]) end
local now = now_ms()
local now_text = int(now)
local started = {}
local deferred = 0
local start_now = tonumber(ARGV[8])
local begun = 0
local first_delivered = 9
local runs = nil
if ARGV[7] ~= '' then
  runs = {}
  for _, name in ipairs(cjson.decode(ARGV[7])) do runs[name] = true end
end

-- Rate limits (GCRA, one theoretical arrival time per scope). admit returns true to start
-- now, or the ms of the slot the task is deferred to and the scopes it booked there ('a,b').
--
-- A task starts only when every scope admits it at that moment, or holds a slot booked
-- for it at its deferral (``rl`` lists those scopes; '1', from older builds, means all).
-- A deferral goes to the latest of the scopes' earliest slots and books it in every
-- scope that is busy up to within one interval of it: always the scope that deferred
-- it (so deferred tasks queue up, never herd), never a scope far idler (booking there
-- would close its free slots until then, e.g. a queue behind one slow type). Scopes
-- not booked are checked again at the start. A booked slot the task cannot use (another
-- scope is busy at its start) is handed back when nobody booked after it.
local function earliest(scope, tat)
  return math.max(tat, now) - limits[scope][2]
end

-- Defer to the latest earliest slot; ``due`` already covers the scopes not held.
local function defer(task, scopes, tats, holds, due)
  local reserved_at = tonumber(task.run_at or '0')
  local released = {}
  for _, scope in ipairs(scopes) do
    if holds(scope) then  -- its slot has come but goes unused: it lapses
      if math.abs(tats[scope] - (reserved_at + limits[scope][1])) < 1 then
        tats[scope], released[scope] = reserved_at, true  -- nobody booked after it
      end
      due = math.max(due, earliest(scope, tats[scope]))
    end
  end
  local booked = {}
  for _, scope in ipairs(scopes) do
    if earliest(scope, tats[scope]) >= due - limits[scope][1] then
      redis.call('HSET', limits_key, scope, int(math.max(tats[scope], due) + limits[scope][1]))
      booked[#booked + 1] = scope
    elseif released[scope] then
      redis.call('HSET', limits_key, scope, int(tats[scope]))
    end
  end
  return due, table.concat(booked, ',')
end

local function admit(key, task)
  local held = {}
  for scope in string.gmatch(task.rl or '', '[^,]+') do held[scope] = true end
  local function holds(scope) return held[scope] or held['1'] end
  if limits then
    local scopes, tats, due = {}, {}, now
    for _, scope in ipairs({'queue', 'type:' .. task.task_type}) do
      if limits[scope] then
        scopes[#scopes + 1] = scope
        tats[scope] = tonumber(redis.call('HGET', limits_key, scope) or '0')
        if not holds(scope) then due = math.max(due, earliest(scope, tats[scope])) end
      end
    end
    if due > now then return defer(task, scopes, tats, holds, due) end
    for _, scope in ipairs(scopes) do
      if not holds(scope) then
        redis.call('HSET', limits_key, scope, int(math.max(tats[scope], now) + limits[scope][1]))
      end
    end
  end
  if task.rl then redis.call('HDEL', key, 'rl') end
  return true
end

local function reserve(stream, sid, id)
  local key = prefix .. id
  local flat = redis.call('HGETALL', key)
  local task = from_flat(flat)
  if task.status ~= 'pending' or task.sid ~= sid then
    redis.call('XACK', stream, group, sid)
    return false
  end
  if runs and not runs[task.task_type] then
    hand_back(stream, group, front, sid, id, task.priority, now)
    return false
  end
  local admitted, booked = admit(key, task)
  if admitted ~= true then
    redis.call('XACK', stream, group, sid)
    redis.call('HSET', key, 'status', 'scheduled', 'run_at', int(admitted), 'rl', booked,
      'sid', '', 'updated_at', now_text)
    redis.call('ZADD', delayed, int(admitted), id)
    emit(events, maxlen, 'rate_limited', key, now)
    deferred = deferred + 1
    return false
  end
  -- One read (above) and one write. The event carries what changed (as emit_task would);
  -- the reply is the hash as read followed by the changed fields, which the reader's
  -- dict lets win over their old values (a reserved rate-limit flag read above is moot).
  -- The attempt number is the fence of this holding from here on.
  local attempt = tostring(tonumber(task.attempt or '0') + 1)
  local changes
  if begun < start_now then
    begun = begun + 1
    changes = {'status', 'processing', 'started_at', now_text, 'updated_at', now_text,
      'worker', consumer, 'progress', '0', 'progress_message', '', 'attempt', attempt}
  else
    changes = {'status', 'reserved', 'updated_at', now_text, 'worker', consumer,
      'progress', '0', 'progress_message', '', 'attempt', attempt}
  end
  redis.call('HSET', key, unpack(changes))
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'kind',
    changes[2] == 'processing' and 'started' or 'reserved', 'ts', now_text, 'id', id,
    unpack(changes))
  for i = 1, #changes do flat[#flat + 1] = changes[i] end
  started[#started + 1] = flat
  return true
end

-- Reserve handed-back tasks of one level (before its stream): their entries move from
-- the HANDBACK consumer to this one. Returns how many were reserved.
local function reserve_front(priority, stream, want)
  local low = (10 - priority) * FRONT_BAND
  local ids = redis.call('ZRANGE', front, int(low), int(low + FRONT_BAND - 1), 'BYSCORE',
    'LIMIT', 0, want)
  local taken = 0
  for _, id in ipairs(ids) do
    redis.call('ZREM', front, id)
    local sid = redis.call('HGET', prefix .. id, 'sid')
    if sid and #redis.call('XCLAIM', stream, group, consumer, 0, sid, 'JUSTID') > 0 then
      if reserve(stream, sid, id) then taken = taken + 1 end
    end
  end
  return taken
end

local function entry_task_id(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then return fields[i + 1] end
  end
  return ''
end

local waiting = {}
local raw = redis.call('HGETALL', depth)
for i = 1, #raw, 2 do waiting[tonumber(raw[i])] = tonumber(raw[i + 1]) end
local delivered = {}
local exhausted = {}

local is_paused = redis.call('EXISTS', paused)

-- A blocking read may have delivered entries after the queue was paused: put them back
-- (a new entry at the end of their level) instead of starting them.
-- (The depth counter is untouched: one undelivered entry replaces another.)
local function put_back(stream, sid, id)
  redis.call('XACK', stream, group, sid)
  local key = prefix .. id
  if redis.call('HGET', key, 'sid') == sid then
    redis.call('HSET', key, 'sid', redis.call('XADD', stream, '*', 'id', id))
  end
end

for i = first_delivered, #ARGV, 3 do
  local position = tonumber(ARGV[i])
  local stream, sid, id = KEYS[6 + position], ARGV[i + 1], ARGV[i + 2]
  if is_paused == 1 then
    put_back(stream, sid, id)
  else
    local priority = 11 - position
    -- In the counter while its task is pending under it (else whoever changed that, e.g.
    -- a cancel, already counted it out).
    local state = redis.call('HMGET', prefix .. id, 'status', 'sid')
    if state[1] == 'pending' and state[2] == sid then
      delivered[priority] = (delivered[priority] or 0) + 1
    end
    if #started >= count then
      -- Beyond the room (one read delivers one entry per level): first in line still.
      if not hand_back(stream, group, front, sid, id, priority, now) then
        redis.call('XACK', stream, group, sid)
      end
    else
      reserve(stream, sid, id)
    end
  end
end

local remaining = count - #started
if is_paused == 1 then remaining = 0 end
local any_front = remaining > 0 and redis.call('ZCARD', front) > 0
for position = 1, 10 do
  if remaining <= 0 then break end
  local priority = 11 - position
  local stream = KEYS[6 + position]
  if any_front then remaining = remaining - reserve_front(priority, stream, remaining) end
  local left = (waiting[priority] or 0) - (delivered[priority] or 0)
  while remaining > 0 and left > 0 do
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', remaining,
      'STREAMS', stream, '>')
    local entries = reply and reply[1][2] or {}
    if #entries == 0 then
      exhausted[priority] = true
      break
    end
    delivered[priority] = (delivered[priority] or 0) + #entries
    left = left - #entries
    for _, entry in ipairs(entries) do
      if reserve(stream, entry[1], entry_task_id(entry[2])) then remaining = remaining - 1 end
    end
  end
end

for priority = 1, 10 do
  -- Never below zero. An exhausted stream does not zero the counter: entries another
  -- consumer's blocking read delivered are still in it (verify_depth.lua heals drift).
  if delivered[priority] then
    local now_waiting = (waiting[priority] or 0) - delivered[priority]
    if now_waiting < 0 then now_waiting = 0 end
    redis.call('HSET', depth, priority, now_waiting)
  end
end
if #started > 0 then
  redis.call('HINCRBY', stats, 'pending', -#started)
  if #started > begun then redis.call('HINCRBY', stats, 'reserved', #started - begun) end
  if begun > 0 then redis.call('HINCRBY', stats, 'processing', begun) end
end
if deferred > 0 then
  redis.call('HINCRBY', stats, 'pending', -deferred)
  redis.call('HINCRBY', stats, 'scheduled', deferred)
end
return {is_paused, started}
