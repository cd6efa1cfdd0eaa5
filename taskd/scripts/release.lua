--[[
  Hand a held task back to its queue (graceful shutdown, a task this worker does not run):
  not an attempt, no back-off. It goes to the front of its level, where it was, so another
  worker takes it next instead of waiting for the lease to expire.

  KEYS[1]  task hash    KEYS[2]  ready stream of its priority
  KEYS[3]  stats hash   KEYS[4]  events stream    KEYS[5]  finished zset
  KEYS[6]  depth hash   KEYS[7]  front zset

  ARGV[1]  group    ARGV[2]  attempt    ARGV[3]  stream entry id    ARGV[4]  events MAXLEN

  Reply: 'pending', or 'cancelled' when a cancellation was requested meanwhile. Releasing
         again what this call already released answers 'pending' (a lost reply).
  Events: released or cancelled.
  Errors: TASKD_NOTFOUND, TASKD_STALE.
]]
local task_key, stream, stats, events, finished, depth, front =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local group, attempt, sid, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local task = load_task(task_key, {'sid', 'cancel'})
if not task then return fail_with(CODE.NOTFOUND, task_key) end
if task.attempt == attempt and task.sid == sid and task.status == 'pending' then
  return 'pending'
end
local was = task.status
if (was ~= 'processing' and was ~= 'reserved') or task.attempt ~= attempt
    or task.sid ~= sid then
  return fail_with(CODE.STALE, task.id .. ' ' .. attempt)
end

local now = now_ms()
if task.cancel == '1' then
  redis.call('XACK', stream, group, sid)
  update(task_key, task, 'status', 'cancelled', 'completed_at', int(now),
    'updated_at', int(now))
  redis.call('ZADD', finished, int(now), task.id)
  move(stats, was, 'cancelled')
  emit_task(events, maxlen, 'cancelled', task, now)
  return 'cancelled'
end
if not hand_back(stream, group, front, sid, task.id, task.priority, now) then
  redis.call('XACK', stream, group, sid)
  update(task_key, task, 'sid', redis.call('XADD', stream, '*', 'id', task.id))
  redis.call('HINCRBY', depth, task.priority, 1)
end
clear(task_key, task, 'worker')
update(task_key, task, 'status', 'pending', 'progress', 0, 'progress_message', '',
  'updated_at', int(now))
move(stats, was, 'pending')
emit_task(events, maxlen, 'released', task, now)
return 'pending'
