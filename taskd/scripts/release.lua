--[[
  Hand a held task back to its queue on graceful shutdown: not an attempt, no back-off, so
  another worker can start it at once instead of waiting for the lease to expire.

  KEYS[1]  task hash    KEYS[2]  ready stream of its priority
  KEYS[3]  stats hash   KEYS[4]  events stream    KEYS[5]  finished zset
  KEYS[6]  depth hash

  ARGV[1]  group    ARGV[2]  attempt    ARGV[3]  stream entry id    ARGV[4]  events MAXLEN

  Reply: 'pending', or 'cancelled' when a cancellation was requested meanwhile.
  Events: released or cancelled.
  Errors: TASKD_NOTFOUND, TASKD_STALE.
]]
local task_key, stream, stats, events, finished, depth =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local group, attempt, sid, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local task = load_task(task_key, {'sid', 'cancel'})
if not task then return fail_with('NOTFOUND', task_key) end
if task.status ~= 'processing' or task.attempt ~= attempt or task.sid ~= sid then
  return fail_with('STALE', task.id .. ' ' .. attempt)
end

local now = now_ms()
redis.call('XACK', stream, group, sid)
if task.cancel == '1' then
  update(task_key, task, 'status', 'cancelled', 'completed_at', int(now),
    'updated_at', int(now))
  redis.call('ZADD', finished, int(now), task.id)
  move(stats, 'processing', 'cancelled')
  emit_task(events, maxlen, 'cancelled', task, now)
  return 'cancelled'
end
local new_sid = redis.call('XADD', stream, '*', 'id', task.id)
redis.call('HINCRBY', depth, task.priority, 1)
clear(task_key, task, 'worker')
update(task_key, task, 'status', 'pending', 'sid', new_sid, 'progress', 0,
  'progress_message', '', 'updated_at', int(now))
move(stats, 'processing', 'pending')
emit_task(events, maxlen, 'released', task, now)
return 'pending'
