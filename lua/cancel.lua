--[[
  cancel: QUEUED, BLOCKED or ASSIGNED -> CANCELLED (the holder gets REVOKED and its slot takes
  queued work); dependents fail. Cancelling a CANCELLED subtask returns it.
  ARGV[3] json  {subtask_id, reason}
  Returns {view}. Errors: 2 unknown subtask; 3 already COMPLETED or FAILED.
  Events: subtask_changed (outbox), REVOKED and ASSIGNED (watch).
]]
local subtask_id = ARGS.subtask_id
local record = sub_get(subtask_id)
if not record then
  return fail(2, 'subtask ' .. subtask_id .. ' not found')
end
if record.state == 'CANCELLED' then
  return done({view = view_of(record)})
end
if record.state == 'COMPLETED' or record.state == 'FAILED' then
  return fail(3, 'subtask ' .. subtask_id .. ' is ' .. record.state .. ' and cannot be cancelled')
end
if record.state == 'QUEUED' then take_from_queue(subtask_id) end
if record.state == 'BLOCKED' then unblock(subtask_id) end
local detail = 'cancelled'
if ARGS.reason ~= '' then detail = 'cancelled: ' .. ARGS.reason end
sub_write('HSET', subtask_id, 'state', 'CANCELLED', 'detail', detail, 'fin', NOW)
local holder = holder_of(record)
if holder then
  sub_write('HSET', subtask_id, 'holder', '')
  publish_revoked(holder, subtask_id)
  if free_holder_slot(holder.specialist_id, subtask_id) then
    drain_for(holder.specialist_id)
  end
end
finish(subtask_id, 'CANCELLED', nil)
return done(view_result(subtask_id))
