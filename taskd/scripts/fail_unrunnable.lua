--[[
  Fail the handed-back tasks of one queue whose type no live worker of the queue runs:
  every worker that took one handed it back (it lacks the handler), so without this it
  would wait forever. A type some live worker runs waits at the front for it.

  KEYS[1]  front zset     KEYS[2]  stats hash     KEYS[3]  events stream
  KEYS[4]  finished zset  KEYS[5]  dead zset      KEYS[6..15]  ready streams 1..10

  ARGV[1]  group    ARGV[2]  task key prefix    ARGV[3]  events MAXLEN
  ARGV[4]  JSON list of the task types the queue's live workers run
  ARGV[5]  max entries examined

  Reply: ids of the tasks failed.
  Events: failed (error "no handler registered for task type '<type>'").
]]
local front, stats, events, finished, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, prefix, maxlen, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[5])
local runs = {}
for _, name in ipairs(cjson.decode(ARGV[4])) do runs[name] = true end
local now = now_ms()
local failed = {}

for _, id in ipairs(redis.call('ZRANGE', front, 0, limit - 1)) do
  local key = prefix .. id
  local task = load_task(key, {'sid', 'task_type', 'children', 'wf_key'})
  if not task or task.status ~= 'pending' then
    redis.call('ZREM', front, id)  -- a leftover: fetch.lua would skip it too
  elseif not runs[task.task_type] then
    local stream = KEYS[5 + tonumber(task.priority)]
    redis.call('ZREM', front, id)
    redis.call('XACK', stream, group, task.sid)
    redis.call('XDEL', stream, task.sid)
    update(key, task, 'status', 'failed', 'completed_at', int(now), 'updated_at', int(now),
      'error', "no handler registered for task type '" .. task.task_type .. "'")
    redis.call('ZADD', finished, int(now), id)
    redis.call('ZADD', dead, int(now), id)
    redis.call('HINCRBY', stats, 'failed_total', 1)
    move(stats, 'pending', 'failed')
    emit_task(events, maxlen, 'failed', task, now)
    flow_ended(tag_of(key), task, 'failed', now, maxlen)
    failed[#failed + 1] = id
  end
end
return failed
