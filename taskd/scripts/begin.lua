--[[
  Start reserved tasks: reserved -> processing, the moment a runner takes each from its
  prefetch buffer. Many runners' starts go in one call (one round trip).

  KEYS[1]  stats hash    KEYS[2]  events stream    KEYS[3]  finished zset
  then for task i (0-based):  KEYS[4+2i] its hash,  KEYS[5+2i] its ready stream

  ARGV[1]  group    ARGV[2]  consumer    ARGV[3]  events MAXLEN
  then 2 values per task: attempt, stream entry id

  Reply: per task its started_at (ms, as text) when it may run; CODE.STALE when this
         holding is over (cancelled while reserved, reclaimed, handed back); CODE.NOTFOUND
         when the task is gone. Starting an attempt that is already processing under this
         holding answers its started_at again (the first reply was lost).
  Events: started (one per started task); cancelled for a task reserved with a cancel
          request (written by an older build's cancel.lua).
]]
local stats, events, finished = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, maxlen = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local now_text = int(now)
local reply, begun = {}, 0

for i = 0, (#ARGV - 3) / 2 - 1 do
  local task_key, stream = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local attempt, sid = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  -- One read of what the decision needs (the hot path: every task passes here).
  local state = redis.call('HMGET', task_key, 'status', 'attempt', 'sid', 'worker', 'cancel',
    'started_at', 'id')
  local task = {status = state[1], attempt = state[2], sid = state[3], worker = state[4],
    cancel = state[5], started_at = state[6], id = state[7]}
  if not task.status then
    reply[#reply + 1] = CODE.NOTFOUND
  elseif task.attempt ~= attempt or task.sid ~= sid or task.worker ~= consumer then
    reply[#reply + 1] = CODE.STALE
  elseif task.status == 'processing' then
    reply[#reply + 1] = task.started_at  -- applied before; its reply was lost
  elseif task.status ~= 'reserved' then
    reply[#reply + 1] = CODE.STALE
  elseif task.cancel == '1' then
    redis.call('XACK', stream, group, sid)
    update(task_key, task, 'status', 'cancelled', 'completed_at', now_text,
      'updated_at', now_text)
    redis.call('ZADD', finished, now_text, task.id)
    move(stats, 'reserved', 'cancelled')
    emit_task(events, maxlen, 'cancelled', task, now)
    reply[#reply + 1] = CODE.STALE
  else
    redis.call('HSET', task_key, 'status', 'processing', 'started_at', now_text,
      'updated_at', now_text)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'kind', 'started', 'ts', now_text,
      'id', task.id, 'status', 'processing', 'progress', '0', 'started_at', now_text,
      'updated_at', now_text, 'worker', consumer, 'attempt', attempt)
    begun = begun + 1
    reply[#reply + 1] = now_text
  end
end
if begun > 0 then
  redis.call('HINCRBY', stats, 'reserved', -begun)
  redis.call('HINCRBY', stats, 'processing', begun)
end
return reply
