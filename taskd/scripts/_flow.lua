--[[
  Workflow prelude, prepended after _lib.lua to every script (not a script itself).

  A workflow task's hash holds, besides the task fields:
    workflow_id, wf_key      its workflow and its key in it
    depends_on               JSON list of the keys it waits for
    parents                  JSON object key -> [queue, id]
    children                 JSON list of [queue, id] that wait for it
    deps_left                unfinished dependencies (the O(1) release counter)
    dep:<parent id>          how that parent ended ('completed', 'failed', 'cancelled'):
                             set once (HSETNX), so a settlement repeated after a lost
                             reply or a redelivered hand-off never counts twice
    run_on_failure           '1': runs even when a dependency failed
    hold_ms / hold_until     delay_s / run_at of the submit, applied at release

  Keys of a queue are derived from its hash tag ('taskd:{<queue>}'), so every key a call
  builds lies in the slot of the keys it was given. A child in another queue (another
  slot) is reached through the parent queue's outbox stream, drained by settle.lua.
]]

local function flow_tag(queue)
  return 'taskd:{' .. queue .. '}'
end

-- The tag of a key made by taskd.keys ('taskd:{q}:...').
local function tag_of(key)
  return string.match(key, '^(taskd:{[^}]*})')
end

-- waiting -> pending (or scheduled when the submit asked for a delay), with its event.
local function flow_release(tag, task_key, task, now, maxlen)
  local due = 0
  if task.hold_ms and task.hold_ms ~= '' then due = now + tonumber(task.hold_ms) end
  if task.hold_until and task.hold_until ~= '' then
    due = math.max(due, tonumber(task.hold_until))
  end
  if due > now then
    redis.call('ZADD', tag .. ':delayed', int(due), task.id)
    update(task_key, task, 'status', 'scheduled', 'run_at', int(due), 'updated_at', int(now))
    move(tag .. ':stats', 'waiting', 'scheduled')
  else
    local sid = redis.call('XADD', tag .. ':stream:' .. task.priority, '*', 'id', task.id)
    redis.call('HINCRBY', tag .. ':depth', task.priority, 1)
    update(task_key, task, 'status', 'pending', 'sid', sid, 'updated_at', int(now))
    move(tag .. ':stats', 'waiting', 'pending')
  end
  emit_task(tag .. ':events', maxlen, 'released', task, now)
end

local FLOW_FIELDS = {'deps_left', 'run_on_failure', 'children', 'hold_ms', 'hold_until',
  'wf_key'}

-- One parent's end reaches one child of the same slot. ``why`` is 'completed' or, for a
-- failure, the text after 'dependency ' in the error ('<key> failed'). Cancellations it
-- causes are appended to ``work`` for flow_run to carry on.
local function flow_settle(tag, child_id, parent_id, outcome, why, now, maxlen, work)
  local key = tag .. ':task:' .. child_id
  local child = load_task(key, FLOW_FIELDS)
  if not child then return end
  if redis.call('HSETNX', key, 'dep:' .. parent_id, outcome) == 0 then return end
  if child.status ~= 'waiting' then return end
  if outcome == 'completed' or child.run_on_failure == '1' then
    if redis.call('HINCRBY', key, 'deps_left', -1) <= 0 then
      flow_release(tag, key, child, now, maxlen)
    end
    return
  end
  update(key, child, 'status', 'cancelled', 'error', 'dependency ' .. why,
    'completed_at', int(now), 'updated_at', int(now))
  move(tag .. ':stats', 'waiting', 'cancelled')
  redis.call('ZADD', tag .. ':finished', int(now), child.id)
  emit_task(tag .. ':events', maxlen, 'cancelled', child, now)
  work[#work + 1] = {tag, child, 'cancelled', why}
end

-- How many parents (JSON key -> [queue, id]) a task brought back by a hand retry must
-- wait for again: those not completed (not ended at all, with ``any_end``: a
-- run_on_failure task). Their marks are forgotten, so their next end counts.
local function flow_unmet(key, parents, any_end)
  local left = 0
  for _, parent in pairs(cjson.decode(parents or '{}')) do
    local mark = 'dep:' .. parent[2]
    local ended = redis.call('HGET', key, mark)
    if not (ended == 'completed' or (any_end and ended)) then
      redis.call('HDEL', key, mark)
      left = left + 1
    end
  end
  return left
end

-- A hand retry brings back a dependent that a failure cancelled: it waits again for every
-- parent that has not completed.
local function flow_rearm(tag, child_id, now, maxlen, work)
  local key = tag .. ':task:' .. child_id
  local child = load_task(key, {'children', 'parents', 'error', 'wf_key'})
  if not child or child.status ~= 'cancelled' then return end
  if string.sub(child.error or '', 1, 11) ~= 'dependency ' then return end
  local left = flow_unmet(key, child.parents, false)
  clear(key, child, 'completed_at', 'error')
  update(key, child, 'status', 'waiting', 'deps_left', left, 'updated_at', int(now))
  move(tag .. ':stats', 'cancelled', 'waiting')
  redis.call('ZREM', tag .. ':finished', child.id)
  emit_task(tag .. ':events', maxlen, 'rearmed', child, now)
  work[#work + 1] = {tag, child, 'rearm', ''}
end

-- Carry ends to children: same-slot ones at once, others through the outbox. ``work``
-- holds {tag, task (with id, children), outcome, why}; it grows as cancellations spread.
local function flow_run(work, now, maxlen)
  local i = 1
  while i <= #work do
    local tag, task, outcome, why = unpack(work[i])
    if task.children and task.children ~= '' and task.children ~= '[]' then
      for _, child in ipairs(cjson.decode(task.children)) do
        local child_tag = flow_tag(child[1])
        if child_tag == tag and outcome == 'rearm' then
          flow_rearm(tag, child[2], now, maxlen, work)
        elseif child_tag == tag then
          flow_settle(tag, child[2], task.id, outcome, why, now, maxlen, work)
        else
          redis.call('XADD', tag .. ':outbox', '*', 'queue', child[1], 'child', child[2],
            'parent', task.id, 'outcome', outcome, 'why', why)
        end
      end
    end
    i = i + 1
  end
end

-- A task of a workflow ended (completed, failed or cancelled): settle its dependents.
-- ``task`` must carry id, children and wf_key; no-op for tasks outside workflows.
local function flow_ended(tag, task, outcome, now, maxlen)
  if not task.children or task.children == '' or task.children == '[]' then return end
  local why = 'completed'
  if outcome ~= 'completed' then why = (task.wf_key or task.id) .. ' ' .. outcome end
  flow_run({{tag, task, outcome, why}}, now, maxlen)
end
