--[[
  get_specialist: one specialist as the store knows it now.
  ARGV[3] json  {specialist_id}
  Returns {specialist}. Errors: 1 unknown specialist. Writes nothing.
]]
local spec = spec_get(ARGS.specialist_id)
if not spec then
  return fail(1, 'specialist ' .. ARGS.specialist_id .. ' not found')
end
return done({specialist = specialist_json(spec)})
