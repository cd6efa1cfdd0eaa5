--[[
  Renew one consumer's leases on the tasks it holds in one queue, tell it which of them
  were asked to cancel or are no longer its own, and hand back entries in its name that
  it does not hold (a fetch applied whose reply was lost).

  KEYS[1..10]  ready streams of priority 1..10    KEYS[11]  stats hash
  KEYS[12]  events stream    KEYS[13]  front zset    KEYS[14]  depth hash

  ARGV[1]  group    ARGV[2]  consumer    ARGV[3]  orphan idle ms (an entry in the
           consumer's name idle this long that it does not hold is an orphan)
  ARGV[4]  task key prefix    ARGV[5]  events MAXLEN
  ARGV[6..]  held tasks as triples: priority, stream entry id, task id

  Reply: {{held ids with a cancel request}, {held ids no longer this consumer's},
          {orphaned ids handed back}}.
  Events: released per orphan handed back.

  Only entries still this consumer's are renewed (XCLAIM JUSTID resets the idle time and
  keeps the delivery count): renewing one that was reclaimed would take it back.
]]
local stats, events, front, depth = KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local group, consumer, orphan_ms = ARGV[1], ARGV[2], ARGV[3]
local prefix, maxlen = ARGV[4], ARGV[5]
local cancels, lost, orphans = {}, {}, {}
local renew, held = {}, {}

for i = 6, #ARGV, 3 do
  local priority, sid, id = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  held[sid] = true
  local state = redis.call('HMGET', prefix .. id, 'status', 'sid', 'worker', 'cancel')
  if state[2] ~= sid or state[3] ~= consumer
      or (state[1] ~= 'reserved' and state[1] ~= 'processing') then
    lost[#lost + 1] = id
  else
    renew[priority] = renew[priority] or {}
    table.insert(renew[priority], sid)
    if state[4] == '1' then cancels[#cancels + 1] = id end
  end
end
for priority, sids in pairs(renew) do
  sids[#sids + 1] = 'JUSTID'
  redis.call('XCLAIM', KEYS[priority], group, consumer, 0, unpack(sids))
end

local now = nil
for priority = 1, 10 do
  local stream = KEYS[priority]
  if redis.call('EXISTS', stream) == 1 then
    local rows = redis.call('XPENDING', stream, group, 'IDLE', orphan_ms, '-', '+', 100,
      consumer)
    for _, row in ipairs(rows) do
      local sid = row[1]
      if not held[sid] then
        now = now or now_ms()
        local id = ''
        local range = redis.call('XRANGE', stream, sid, sid)
        if #range > 0 then
          for j = 1, #range[1][2], 2 do
            if range[1][2][j] == 'id' then id = range[1][2][j + 1] end
          end
        end
        local key = prefix .. id
        local task = load_task(key, {'sid'})
        if not task or task.sid ~= sid then
          redis.call('XACK', stream, group, sid)
        elseif task.status == 'pending' then
          -- Delivered by a blocking read whose reply was lost: out of the depth counter,
          -- to the front.
          redis.call('HINCRBY', depth, priority, -1)
          hand_back(stream, group, front, sid, id, priority, now)
        elseif (task.status == 'reserved' or task.status == 'processing')
            and task.worker == consumer then
          -- The consumer holds every task from its fetch until its outcome is written,
          -- so one in its name that it does not hold never reached a runner: a fetch
          -- whose reply was lost reserved it, or started it for an idle runner.
          local was = task.status
          hand_back(stream, group, front, sid, id, priority, now)
          clear(key, task, 'worker', 'started_at')
          update(key, task, 'status', 'pending', 'updated_at', int(now))
          move(stats, was, 'pending')
          emit_task(events, maxlen, 'released', task, now)
          orphans[#orphans + 1] = id
        end
      end
    end
  end
end
return {cancels, lost, orphans}
