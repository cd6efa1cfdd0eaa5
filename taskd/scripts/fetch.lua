--[[
  Start up to COUNT ready tasks for one consumer, most urgent priority first, FIFO within
  a level; also starts entries a blocking XREADGROUP already delivered to this consumer.

  KEYS[1]  stats hash    KEYS[2]  events stream    KEYS[3]  depth hash
  KEYS[4..13]  ready streams of priority 10 down to 1

  ARGV[1]  group           ARGV[2]  consumer       ARGV[3]  count
  ARGV[4]  events MAXLEN   ARGV[5]  task key prefix (carries the queue's hash tag, so
                                     every task hash lives in this script's slot)
  ARGV[6..]  pre-delivered entries as triples: stream position (1 = KEYS[4]), entry id,
             task id

  Reply: one flat HGETALL array per started task.
  Events: started (one per started task).

  The depth hash counts undelivered entries per priority, so empty levels cost nothing.
  An entry whose task is gone, no longer pending, or was re-queued under a newer entry is
  acknowledged and skipped: it is a leftover, not work.
]]
local stats, events, depth = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local maxlen, prefix = ARGV[4], ARGV[5]
local now = now_ms()
local started = {}

local function start(stream, sid, id)
  local key = prefix .. id
  local state = redis.call('HMGET', key, 'status', 'sid')
  if state[1] ~= 'pending' or state[2] ~= sid then
    redis.call('XACK', stream, group, sid)
    return false
  end
  redis.call('HINCRBY', key, 'attempt', 1)
  redis.call('HSET', key, 'status', 'processing', 'started_at', int(now),
    'updated_at', int(now), 'worker', consumer, 'progress', 0, 'progress_message', '')
  local flat = redis.call('HGETALL', key)
  emit_task(events, maxlen, 'started', from_flat(flat), now)
  started[#started + 1] = flat
  return true
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

for i = 6, #ARGV, 3 do
  local position = tonumber(ARGV[i])
  local priority = 11 - position
  delivered[priority] = (delivered[priority] or 0) + 1
  start(KEYS[3 + position], ARGV[i + 1], ARGV[i + 2])
end

local remaining = count - #started
for position = 1, 10 do
  local priority = 11 - position
  local stream = KEYS[3 + position]
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
      if start(stream, entry[1], entry_task_id(entry[2])) then remaining = remaining - 1 end
    end
  end
  if remaining <= 0 then break end
end

for priority = 1, 10 do
  -- Never below zero, and zero once the stream had nothing left: a drifted counter heals
  -- here (and in trim.lua).
  if delivered[priority] or exhausted[priority] then
    local now_waiting = (waiting[priority] or 0) - (delivered[priority] or 0)
    if exhausted[priority] or now_waiting < 0 then now_waiting = 0 end
    redis.call('HSET', depth, priority, now_waiting)
  end
end
if #started > 0 then
  redis.call('HINCRBY', stats, 'pending', -#started)
  redis.call('HINCRBY', stats, 'processing', #started)
end
return started
