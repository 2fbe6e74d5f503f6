--[[
  release: the holder hands a subtask back (fenced by specialist and epoch). Its freed slot takes
  queued work first (not this subtask: a releaser is not offered it again), then the subtask goes
  to the head of its queue with attempt + 1 (FAILED past max attempts) and to whoever can take it.
  ARGV[3] json  {subtask_id, specialist_id, epoch, reason}
  Returns {view}. Errors: 2 unknown subtask; 3 not assigned, other holder or stale epoch.
  Events: subtask_changed (outbox), ASSIGNED (watch).
]]
local subtask_id = ARGS.subtask_id
local specialist_id = ARGS.specialist_id
local _, refused = fenced(sub_get(subtask_id), subtask_id, specialist_id, ARGS.epoch)
if refused then return refused end
local holder_type = free_holder_slot(specialist_id, subtask_id)
local excluded = decode_list(rcall('HGET', key('sub', subtask_id), 'excl'))
table.insert(excluded, specialist_id)
sub_write('HSET', subtask_id, 'excl', cjson.encode(excluded))
local detail = 'released by specialist ' .. specialist_id
if ARGS.reason ~= '' then detail = detail .. ': ' .. ARGS.reason end
if holder_type then drain_for(specialist_id) end
if requeue_or_fail(subtask_id, true, detail) then place_queued(subtask_id) end
return done(view_result(subtask_id))
