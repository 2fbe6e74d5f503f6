--[[
  queue_position: a queued subtask's real 1-based rank in its queue (ZRANK, O(log N)).
  ARGV[3] json  {subtask_id}
  Returns {routed_type, position, depth}. Errors: 2 unknown subtask; 3 not queued.
]]
local record = sub_get(ARGS.subtask_id)
if not record then
  return fail(2, 'subtask ' .. ARGS.subtask_id .. ' not found')
end
if record.state ~= 'QUEUED' then
  return fail(3, 'subtask ' .. ARGS.subtask_id .. ' is ' .. record.state .. ', not queued')
end
return done({routed_type = record.rtype, position = queue_rank(record.id),
  depth = rcall('ZCARD', key('queue'))})
