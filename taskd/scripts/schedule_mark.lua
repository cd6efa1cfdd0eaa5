--[[
  Record that a periodic schedule reached an occurrence, never moving backwards.

  KEYS[1]  the schedule's marker (string, occurrence ms)

  ARGV[1]  occurrence ms

  Reply: the previous marker ('' when the schedule had none: its first start ever).
]]
local marker, occurrence = KEYS[1], tonumber(ARGV[1])
local previous = redis.call('GET', marker)
if not previous or tonumber(previous) < occurrence then
  redis.call('SET', marker, int(occurrence))
end
return previous or ''
