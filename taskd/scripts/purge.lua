--[[
  Cancel a queue's not-yet-started tasks (pending, scheduled, retrying, reserved)
  wherever they sit: undelivered in a stream, delivered to a consumer by a blocking read
  but not reserved, handed back to the front, reserved in a worker's buffer, or delayed.
  Bounded steps: the caller repeats until the reply's second value is 0. Running tasks
  are left alone.

  KEYS[1]  stats hash    KEYS[2]  events stream    KEYS[3]  finished zset
  KEYS[4]  delayed zset  KEYS[5]  depth hash       KEYS[6..15]  ready streams 1..10
  KEYS[16] front zset

  ARGV[1]  group    ARGV[2]  task key prefix    ARGV[3]  events MAXLEN
  ARGV[4]  max tasks per call    ARGV[5]  cancel pub/sub channel (holders of reserved
           tasks drop them from their buffers)

  Reply: {tasks cancelled by this call, entries and ids examined (0 = nothing left);
         delivered entries of running tasks are not counted: they are left alone}.
  Events: cancelled (one per task, error "purged").
]]
local stats, events, finished, delayed, depth = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, prefix, maxlen, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local front, channel = KEYS[16], ARGV[5]
local now = now_ms()
local purged = 0
local examined = 0

local function cancel(key, task, was)
  update(key, task, 'status', 'cancelled', 'error', 'purged', 'completed_at', int(now),
    'updated_at', int(now))
  redis.call('ZADD', finished, int(now), task.id)
  move(stats, was, 'cancelled')
  emit_task(events, maxlen, 'cancelled', task, now)
  purged = purged + 1
end

for priority = 1, 10 do
  local stream = KEYS[5 + priority]
  if examined >= limit then break end
  if redis.call('EXISTS', stream) == 1 then
    local last = '0-0'
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      local fields = {}
      for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
      if fields['name'] == group then last = fields['last-delivered-id'] end
    end
    local entries = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', limit - examined)
    for _, entry in ipairs(entries) do
      local id = ''
      for i = 1, #entry[2], 2 do
        if entry[2][i] == 'id' then id = entry[2][i + 1] end
      end
      examined = examined + 1
      local key = prefix .. id
      local task = load_task(key, {'sid'})
      redis.call('XDEL', stream, entry[1])
      redis.call('HINCRBY', depth, priority, -1)  -- every entry after `last` was undelivered
      if task and task.status == 'pending' and task.sid == entry[1] then
        cancel(key, task, 'pending')
      end
    end
  end
end

-- Delivered entries (pending in the group): a blocking read's not yet reserved, the
-- front's, reserved ones. Only a blocking read's is in the depth counter.
local function entry_id_of(stream, sid)
  local range = redis.call('XRANGE', stream, sid, sid)
  if #range == 0 then return nil end
  for i = 1, #range[1][2], 2 do
    if range[1][2][i] == 'id' then return range[1][2][i + 1] end
  end
  return nil
end

for priority = 1, 10 do
  local stream = KEYS[5 + priority]
  if examined >= limit then break end
  if redis.call('EXISTS', stream) == 1 then
    local start = '-'
    while examined < limit do
      local rows = redis.call('XPENDING', stream, group, start, '+', 1000)
      if #rows == 0 then break end
      for _, row in ipairs(rows) do
        local sid = row[1]
        local id = entry_id_of(stream, sid)
        local key = prefix .. (id or '')
        local task = id and load_task(key, {'sid'})
        if not task or task.sid ~= sid then
          redis.call('XACK', stream, group, sid)  -- a leftover
          examined = examined + 1
        elseif task.status == 'pending' or task.status == 'reserved' then
          redis.call('XACK', stream, group, sid)
          redis.call('XDEL', stream, sid)
          -- A pending one a blocking read delivered is in the depth counter; the front's not.
          if redis.call('ZREM', front, task.id) == 0 and task.status == 'pending' then
            redis.call('HINCRBY', depth, priority, -1)
          end
          if task.status == 'reserved' then redis.call('PUBLISH', channel, task.id) end
          cancel(key, task, task.status)
          examined = examined + 1
        end
        if examined >= limit then break end
      end
      if #rows < 1000 then break end
      local ms, seq = string.match(rows[#rows][1], '^(%d+)-(%d+)$')
      start = ms .. '-' .. int(tonumber(seq) + 1)
    end
  end
end

if examined < limit then
  for _, id in ipairs(redis.call('ZRANGE', delayed, 0, limit - examined - 1)) do
    examined = examined + 1
    redis.call('ZREM', delayed, id)
    local key = prefix .. id
    local task = load_task(key)
    if task and (task.status == 'scheduled' or task.status == 'retrying') then
      cancel(key, task, task.status)
    end
  end
end
return {purged, examined}
