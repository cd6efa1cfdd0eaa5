--[[
  Trim a ready stream below the oldest entry that still matters: the oldest one pending in
  the group (delivered, not acknowledged) or, when none is, the first never delivered.
  XTRIM MAXLEN would silently drop pending tasks; MINID at this bound never does. (The
  depth counter is not touched: verify_depth.lua checks it.)

  KEYS[1]  ready stream

  ARGV[1]  group

  Reply: number of entries removed.
]]
local stream, group = KEYS[1], ARGV[1]
if redis.call('EXISTS', stream) == 0 then return 0 end

local last_delivered = nil
for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['name'] == group then
    last_delivered = fields['last-delivered-id']
  end
end
if not last_delivered then return 0 end

local ms, seq = string.match(last_delivered, '^(%d+)-(%d+)$')
local min_id = ms .. '-' .. int(tonumber(seq) + 1)
local pending = redis.call('XPENDING', stream, group)
if tonumber(pending[1]) > 0 then min_id = pending[2] end
return redis.call('XTRIM', stream, 'MINID', min_id)
