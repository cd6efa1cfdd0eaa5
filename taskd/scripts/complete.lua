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

for i = 0, count - 1 do
  local task_key, stream = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local attempt, sid, result = ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  local task = load_task(task_key, {'sid', 'cancel'})
  if not task then
    reply[#reply + 1] = 'missing'
  elseif task.status ~= 'processing' or task.attempt ~= attempt or task.sid ~= sid then
    reply[#reply + 1] = 'stale'
  else
    redis.call('XACK', stream, group, sid)
    update(task_key, task, 'status', 'completed', 'progress', 100, 'result', result,
      'completed_at', int(now), 'updated_at', int(now))
    if task.cancel then redis.call('HDEL', task_key, 'cancel') end
    redis.call('ZADD', finished, int(now), task.id)
    emit_task(events, maxlen, 'completed', task, now)
    done = done + 1
    reply[#reply + 1] = 'completed'
  end
end
if done > 0 then
  redis.call('HINCRBY', stats, 'processing', -done)
  redis.call('HINCRBY', stats, 'completed', done)
  redis.call('HINCRBY', stats, 'completed_total', done)
end
return reply
