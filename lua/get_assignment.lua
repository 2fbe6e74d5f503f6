--[[
  get_assignment: a subtask's assignment state and the subtask as submitted.
  ARGV[3] json  {subtask_id}
  Returns {view, spec, created_at_ms}. Errors: 2 unknown subtask. Writes nothing.
]]
local record = sub_get(ARGS.subtask_id)
if not record then
  return fail(2, 'subtask ' .. ARGS.subtask_id .. ' not found')
end
return done({view = view_of(record), spec = record.spec, created_at_ms = tonumber(record.created)})
