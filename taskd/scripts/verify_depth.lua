--[[
  Verify one priority's depth counter against the entries that are really waiting, and
  correct it only when it drifted.

  The counter is kept exact by the scripts that add or remove undelivered entries; this
  is the safety net, never the source (the group's `lag` is not used: once entries were
  deleted before delivery and the stream trimmed, Redis and Valkey report a lag that
  still counts them). The counter should equal the live entries after the group's
  last-delivered id plus the entries a blocking read delivered that fetch.lua has not
  taken yet (pending in the group, their task still `pending` with that entry as `sid`).
  Both are counted in bounded steps; with more than ARGV[4] of either, nothing is
  verified (a drift that small is invisible in such a backlog anyway).

  KEYS[1]  ready stream    KEYS[2]  depth hash

  ARGV[1]  group    ARGV[2]  the stream's priority    ARGV[3]  task key prefix
  ARGV[4]  most entries to look at

  Reply: {counter as found, counter now}, equal unless corrected; {} when not verified.
]]
local stream, depth = KEYS[1], KEYS[2]
local group, priority, prefix, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local STEP = 200
local found = tonumber(redis.call('HGET', depth, priority) or '0')
if redis.call('EXISTS', stream) == 0 then
  if found ~= 0 then redis.call('HSET', depth, priority, 0) end
  return {found, 0}
end

local last = nil
for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['name'] == group then last = fields['last-delivered-id'] end
end
if not last then return {} end

local undelivered, from = 0, '(' .. last
while true do
  local entries = redis.call('XRANGE', stream, from, '+', 'COUNT', STEP)
  undelivered = undelivered + #entries
  if #entries < STEP then break end
  if undelivered > limit then return {} end
  from = '(' .. entries[#entries][1]
end
if undelivered == found then return {found, found} end

-- Entries a blocking read delivered, not yet taken by fetch.lua: still in the counter.
local in_flight, after = 0, '-'
while true do
  local rows = redis.call('XPENDING', stream, group, after, '+', STEP)
  for _, row in ipairs(rows) do
    local entry = redis.call('XRANGE', stream, row[1], row[1])[1]
    if entry then
      local id = ''
      for i = 1, #entry[2], 2 do
        if entry[2][i] == 'id' then id = entry[2][i + 1] end
      end
      local state = redis.call('HMGET', prefix .. id, 'status', 'sid')
      -- (Entries handed back to the front, held by 'taskd:front', are not in the counter.)
      if state[1] == 'pending' and state[2] == row[1] and row[2] ~= 'taskd:front' then
        in_flight = in_flight + 1
      end
    end
  end
  if #rows < STEP then break end
  if in_flight > limit then return {} end
  after = '(' .. rows[#rows][1]
end

local expected = undelivered + in_flight
if expected ~= found then redis.call('HSET', depth, priority, expected) end
return {found, expected}
