--[[
  Store a running attempt's progress (0-100) and message.

  KEYS[1]  task hash    KEYS[2]  events stream

  ARGV[1]  attempt    ARGV[2]  stream entry id    ARGV[3]  progress    ARGV[4]  message
  ARGV[5]  events MAXLEN

  Reply: 'stored'; 'cancel' (stored, and a cancellation was requested); CODE.STALE
         (ignored: stale attempt or the task is gone; a late report must not touch a task
         that moved on).
  Events: progress.
]]
local task_key, events = KEYS[1], KEYS[2]
local attempt, sid, progress, message, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local task = load_task(task_key, {'sid', 'cancel'})
if not task or task.status ~= 'processing' or task.attempt ~= attempt or task.sid ~= sid then
  return CODE.STALE
end

local now = now_ms()
update(task_key, task, 'progress', progress, 'progress_message', message,
  'updated_at', int(now))
emit_task(events, maxlen, 'progress', task, now)
if task.cancel == '1' then return 'cancel' end
return 'stored'
