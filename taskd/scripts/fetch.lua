--[[
  Start up to COUNT ready tasks for one consumer, most urgent priority first, FIFO within
  a level; also starts entries a blocking XREADGROUP already delivered to this consumer.

  KEYS[1]  stats hash    KEYS[2]  events stream
  KEYS[3..12]  ready streams of priority 10 down to 1

  ARGV[1]  group           ARGV[2]  consumer       ARGV[3]  count
  ARGV[4]  events MAXLEN   ARGV[5]  task key prefix (carries the queue's hash tag, so
                                     every task hash lives in this script's slot)
  ARGV[6..]  pre-delivered entries as triples: stream position (1 = KEYS[3]), entry id,
             task id

  Reply: one flat HGETALL array per started task.
  Events: started (one per started task).

  An entry whose task is gone, no longer pending, or was re-queued under a newer entry is
  acknowledged and skipped: it is a leftover, not work.
]]
local stats, events = KEYS[1], KEYS[2]
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
  local attempt = redis.call('HINCRBY', key, 'attempt', 1)
  redis.call('HSET', key, 'status', 'processing', 'started_at', int(now),
    'updated_at', int(now), 'worker', consumer, 'progress', 0, 'progress_message', '')
  move(stats, 'pending', 'processing')
  emit(events, maxlen, 'started', key, now)
  started[#started + 1] = redis.call('HGETALL', key)
  return true
end

local function entry_task_id(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then return fields[i + 1] end
  end
  return ''
end

for i = 6, #ARGV, 3 do
  start(KEYS[2 + tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end

local remaining = count - #started
for s = 3, 12 do
  while remaining > 0 do
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', remaining,
      'STREAMS', KEYS[s], '>')
    if not reply then break end
    local entries = reply[1][2]
    if #entries == 0 then break end
    for _, entry in ipairs(entries) do
      if start(KEYS[s], entry[1], entry_task_id(entry[2])) then remaining = remaining - 1 end
    end
  end
  if remaining <= 0 then break end
end
return started
