--[[
  Delete finished tasks older than the retention period, with their index entries and
  unique-key pointers, keeping the per-status counters exact. A workflow's task only
  leaves this zset: it expires with its workflow, after retention from the workflow's
  end (taskd.store.flowview.expire_workflows), so no parent result vanishes early.

  KEYS[1]  finished zset    KEYS[2]  index zset    KEYS[3]  dead zset    KEYS[4]  stats hash

  ARGV[1]  retention ms    ARGV[2]  max tasks per call    ARGV[3]  task key prefix
  ARGV[4]  unique-key pointer prefix (both carry the queue's hash tag)

  Reply: number of tasks deleted.
]]
local finished, index, dead, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local retention_ms, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local prefix, unique_prefix = ARGV[3], ARGV[4]
local cutoff = now_ms() - retention_ms

local ids = redis.call('ZRANGE', finished, '-inf', int(cutoff), 'BYSCORE', 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local key = prefix .. id
  local state = redis.call('HMGET', key, 'status', 'unique_key', 'workflow_id')
  if not state[3] then  -- a workflow's task stays (only its entry here goes)
    if state[1] then
      move(stats, state[1], nil)
      redis.call('HINCRBY', stats, 'total', -1)
      redis.call('DEL', key)
    end
    if state[2] and state[2] ~= '' then
      local ptr = unique_prefix .. state[2]
      if redis.call('GET', ptr) == id then redis.call('DEL', ptr) end
    end
    redis.call('ZREM', index, id)
    redis.call('ZREM', dead, id)
  end
  redis.call('ZREM', finished, id)
end
return #ids
