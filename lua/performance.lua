--[[
  performance: a specialist's outcome record (kept after it deregisters).
  ARGV[3] json  {specialist_id}
  Returns {completed, succeeded, quality_sum, time_sum, recent}. Errors: 1 never known.
]]
local perf = rcall('HMGET', key('perf', ARGS.specialist_id), 'completed', 'succeeded', 'qsum',
  'tsum', 'w')
if not perf[1] then
  if rcall('EXISTS', key('spec', ARGS.specialist_id)) == 0 then
    return fail(1, 'specialist ' .. ARGS.specialist_id .. ' not found')
  end
  return done({completed = 0, succeeded = 0, quality_sum = '0', time_sum = '0', recent = ''})
end
return done({completed = tonumber(perf[1]), succeeded = tonumber(perf[2] or '0'),
  quality_sum = perf[3], time_sum = perf[4], recent = perf[5]})
