--[[
  Remove a consumer from a queue's group only when it holds nothing and has been idle for
  min idle ms, checked and done in one step: a paused daemon that resumes and fetches
  between a look and a delete can no longer lose the entries it fetched.

  KEYS[1..10]  ready streams of priority 1..10

  ARGV[1]  group    ARGV[2]  consumer    ARGV[3]  min idle ms

  Reply: 1 removed, 0 kept (it holds entries or was active within min idle ms).
]]
local group, consumer, min_idle = ARGV[1], ARGV[2], tonumber(ARGV[3])
local member = {}

for i = 1, 10 do
  local stream = KEYS[i]
  if redis.call('EXISTS', stream) == 1 then
    local infos = redis.pcall('XINFO', 'CONSUMERS', stream, group)
    if type(infos) == 'table' and not infos.err then
      for _, info in ipairs(infos) do
        local fields = {}
        for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
        if fields['name'] == consumer then
          if tonumber(fields['pending']) > 0 or tonumber(fields['idle']) < min_idle then
            return 0
          end
          member[#member + 1] = stream
        end
      end
    end
  end
end
for _, stream in ipairs(member) do
  redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
end
return 1
