--[[
  in_flight: a specialist's current assignments, oldest epoch first.
  ARGV[3] json  {specialist_id}
  Returns {events[] (each {assignment, spec, created_at_ms}), epoch (the type's epoch counter:
  every assignment up to it happened before this read)}. Errors: 1 unknown specialist.
]]
if rcall('EXISTS', key('spec', ARGS.specialist_id)) == 0 then
  return fail(1, 'specialist ' .. ARGS.specialist_id .. ' not found')
end
local events = {}
for _, subtask_id in ipairs(rcall('ZRANGE', key('held', ARGS.specialist_id), 0, -1)) do
  local record = sub_get(subtask_id)
  if record then
    table.insert(events, {assignment = view_of(record), spec = record.spec,
      created_at_ms = tonumber(record.created)})
  end
end
return done({events = events, epoch = tonumber(rcall('GET', key('epoch')) or '0')})
