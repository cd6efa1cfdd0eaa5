--[[
  Trim a ready stream below the oldest entry that still matters: the oldest one pending in
  the group (delivered, not acknowledged) or, when none is, the first never delivered.
  XTRIM MAXLEN would silently drop pending tasks; MINID at this bound never does. Also
  re-syncs the priority's depth counter with the group's lag when Redis knows it.

  KEYS[1]  ready stream    KEYS[2]  depth hash

  ARGV[1]  group    ARGV[2]  the stream's priority

  Reply: number of entries removed.
]]
local stream, depth, group, priority = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
if redis.call('EXISTS', stream) == 0 then return 0 end

local last_delivered, lag = nil, nil
for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['name'] == group then
    last_delivered, lag = fields['last-delivered-id'], fields['lag']
  end
end
if not last_delivered then return 0 end
if type(lag) == 'number' then redis.call('HSET', depth, priority, lag) end

local ms, seq = string.match(last_delivered, '^(%d+)-(%d+)$')
local min_id = ms .. '-' .. int(tonumber(seq) + 1)
local pending = redis.call('XPENDING', stream, group)
if tonumber(pending[1]) > 0 then min_id = pending[2] end
return redis.call('XTRIM', stream, 'MINID', min_id)
