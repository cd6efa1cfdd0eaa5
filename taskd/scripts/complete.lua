--[[
  Record the successful end of one or more attempts of one queue (completions that
  finish in the same moment are written together, in one round trip).

  KEYS[1]  stats hash    KEYS[2]  events stream    KEYS[3]  finished zset
  then for task i (0-based):  KEYS[4+2i] its hash,  KEYS[5+2i] its ready stream
  and last:  KEYS[n-1]  history hash,  KEYS[n]  history index zset (see record_history)

  ARGV[1]  group    ARGV[2]  events MAXLEN
  then 3 values per task: attempt, stream entry id, result (JSON)

  Reply: one status per task: 'completed' (also when this attempt's completion was
         written before and the reply lost), CODE.STALE (the attempt is not the one held:
         the caller was presumed dead and the task moved on; nothing is written for it) or
         CODE.NOTFOUND (no such task).
  Events: completed (one per completed task; with error '' when an earlier attempt's
          error was cleared); released or cancelled for workflow dependents in this
          slot (others get an outbox entry, see _flow.lua).
]]
-- ``items``: {task hash, its ready stream, attempt, stream entry id, result JSON} each.
-- Returns per item 'completed', CODE.STALE (not the attempt held: nothing written) or
-- CODE.NOTFOUND. One XACK per stream and one ZADD for the batch.
local function complete_tasks(stats, events, finished, maxlen, group, now, items, counts)
  local reply, acks, finished_args, done = {}, {}, {}, 0
  local now_text = int(now)
  for _, item in ipairs(items) do
    local task_key, stream, attempt, sid, result = item[1], item[2], item[3], item[4], item[5]
    local state = redis.call('HMGET', task_key, 'status', 'attempt', 'sid', 'id', 'cancel',
      'children', 'wf_key', 'task_type', 'started_at', 'error')
    if not state[1] then
      reply[#reply + 1] = CODE.NOTFOUND
    elseif state[2] ~= attempt or state[3] ~= sid then
      reply[#reply + 1] = CODE.STALE
    elseif state[1] == 'completed' then
      reply[#reply + 1] = 'completed'  -- written before; that reply was lost
    elseif state[1] ~= 'processing' then
      reply[#reply + 1] = CODE.STALE
    else
      acks[stream] = acks[stream] or {}
      table.insert(acks[stream], sid)
      redis.call('HSET', task_key, 'status', 'completed', 'progress', '100', 'result', result,
        'completed_at', now_text, 'updated_at', now_text)
      if state[5] then redis.call('HDEL', task_key, 'cancel') end
      finished_args[#finished_args + 1] = now_text
      finished_args[#finished_args + 1] = state[4]
      -- What emit_task would write for these changes, without building the task table.
      local event = {events, 'MAXLEN', '~', maxlen, '*', 'kind', 'completed',
        'ts', now_text, 'id', state[4], 'status', 'completed', 'progress', '100',
        'completed_at', now_text, 'updated_at', now_text}
      if state[10] then
        -- An earlier attempt's error belongs to that attempt's event, not to the success.
        redis.call('HDEL', task_key, 'error')
        event[#event + 1] = 'error'
        event[#event + 1] = ''
      end
      redis.call('XADD', unpack(event))
      if state[6] then
        flow_ended(tag_of(task_key), {id = state[4], children = state[6], wf_key = state[7]},
          'completed', now, maxlen)
      end
      done = done + 1
      history_run(counts, state[8] or '', now - tonumber(state[9] or now))
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
end

local count = (#ARGV - 2) / 3
local items = {}
for i = 0, count - 1 do
  items[#items + 1] = {KEYS[4 + 2 * i], KEYS[5 + 2 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i],
    ARGV[5 + 3 * i]}
end
local now, counts = now_ms(), {}
local reply = complete_tasks(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[1], now, items, counts)
record_history(KEYS[#KEYS - 1], KEYS[#KEYS], now, counts)
return reply
