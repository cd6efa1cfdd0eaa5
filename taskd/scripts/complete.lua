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
local count = (#ARGV - 2) / 3
local items = {}
for i = 0, count - 1 do
  items[#items + 1] = {KEYS[4 + 2 * i], KEYS[5 + 2 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i],
    ARGV[5 + 3 * i]}
end
return complete_tasks(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[1], now_ms(), items)
