--[[
  Start reserved tasks: reserved -> processing, the moment a runner takes each from its
  prefetch buffer. Many runners' starts go in one call (one round trip).

  KEYS[1]  stats hash    KEYS[2]  events stream    KEYS[3]  finished zset
  KEYS[4]  paused flag   KEYS[5]  depth hash       KEYS[6]  front zset
  then for task i (0-based):  KEYS[7+2i] its hash,  KEYS[8+2i] its ready stream

  ARGV[1]  group    ARGV[2]  consumer    ARGV[3]  events MAXLEN
  then 2 values per task: attempt, stream entry id

  Reply: per task its started_at (ms, as text) when it may run; CODE.STALE when this
         holding is over (cancelled while reserved, reclaimed, handed back, or handed back
         here because its queue is paused); CODE.NOTFOUND
         when the task is gone. Starting an attempt that is already processing under this
         holding answers its started_at again (the first reply was lost).
  Events: started (one per started task); cancelled for a task reserved with a cancel
          request (written by an older build's cancel.lua); released for a task handed
          back because its queue was paused after the fetch reserved it.

  A pause stops every daemon from starting the queue's tasks: one reserved before the
  pause is not started but goes back to the front of its level (pending, no attempt
  used), where the first fetch after the resume takes it.
]]
local stats, events, finished, paused, depth, front =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local group, consumer, maxlen = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local now_text = int(now)
local reply, begun, released = {}, 0, 0
local is_paused = redis.call('EXISTS', paused) == 1

for i = 0, (#ARGV - 3) / 2 - 1 do
  local task_key, stream = KEYS[7 + 2 * i], KEYS[8 + 2 * i]
  local attempt, sid = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  -- One read of what the decision needs (the hot path: every task passes here).
  local state = redis.call('HMGET', task_key, 'status', 'attempt', 'sid', 'worker', 'cancel',
    'started_at', 'id', 'priority', 'progress')
  local task = {status = state[1], attempt = state[2], sid = state[3], worker = state[4],
    cancel = state[5], started_at = state[6], id = state[7], priority = state[8],
    progress = state[9]}
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
  elseif is_paused then
    if not hand_back(stream, group, front, sid, task.id, task.priority, now) then
      redis.call('XACK', stream, group, sid)  -- its entry was deleted: queue it anew
      update(task_key, task, 'sid', redis.call('XADD', stream, '*', 'id', task.id))
      redis.call('HINCRBY', depth, task.priority, 1)
    end
    clear(task_key, task, 'worker')
    update(task_key, task, 'status', 'pending', 'updated_at', now_text)
    emit_task(events, maxlen, 'released', task, now)
    released = released + 1
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
if released > 0 then
  redis.call('HINCRBY', stats, 'reserved', -released)
  redis.call('HINCRBY', stats, 'pending', released)
end
return reply
