--[[
  Record the successful end of one or more attempts of one queue (completions that
  finish in the same moment are written together, in one round trip).

  KEYS[1]  stats hash    KEYS[2]  events stream    KEYS[3]  finished zset
  then for task i (0-based):  KEYS[4+2i] its hash,  KEYS[5+2i] its ready stream

  ARGV[1]  group    ARGV[2]  events MAXLEN
  then 3 values per task: attempt, stream entry id, result (JSON)

  Reply: one status per task: 'completed', 'stale' (the attempt is not the one held: the
         caller was presumed dead and the task moved on; nothing is written for it) or
         'missing' (no such task).
  Events: completed (one per completed task).
]]
local stats, events, finished = KEYS[1], KEYS[2], KEYS[3]
local group, maxlen = ARGV[1], ARGV[2]
local count = (#ARGV - 2) / 3
local now = now_ms()
local reply = {}
local done = 0
local acks = {}  -- stream -> entry ids: one XACK per stream for the whole batch
local finished_args = {}

for i = 0, count - 1 do
  local task_key, stream = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local attempt, sid, result = ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  local state = redis.call('HMGET', task_key, 'status', 'attempt', 'sid', 'id', 'cancel')
  if not state[1] then
    reply[#reply + 1] = 'missing'
  elseif state[1] ~= 'processing' or state[2] ~= attempt or state[3] ~= sid then
    reply[#reply + 1] = 'stale'
  else
    acks[stream] = acks[stream] or {}
    table.insert(acks[stream], sid)
    local task = {id = state[4], status = 'processing', progress = '0'}
    update(task_key, task, 'status', 'completed', 'progress', 100, 'result', result,
      'completed_at', int(now), 'updated_at', int(now))
    if state[5] then redis.call('HDEL', task_key, 'cancel') end
    finished_args[#finished_args + 1] = int(now)
    finished_args[#finished_args + 1] = state[4]
    emit_task(events, maxlen, 'completed', task, now)
    done = done + 1
    reply[#reply + 1] = 'completed'
  end
end
for stream, sids in pairs(acks) do redis.call('XACK', stream, group, unpack(sids)) end
if done > 0 then
  redis.call('ZADD', finished, unpack(finished_args))
  redis.call('HINCRBY', stats, 'processing', -done)
  redis.call('HINCRBY', stats, 'completed', done)
  redis.call('HINCRBY', stats, 'completed_total', done)
end
return reply
