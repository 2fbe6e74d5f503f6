--[[
  unbind: a specialist id the directory binds to this slot's type is being registered as another
  type. Refused while it is registered here; otherwise the id is marked moved (a registration
  here that read the directory before the move is told to retry) and a copy of its performance
  record goes with it (the copy here stays until the id comes back, when the record that comes
  with it replaces it, so a move cut short loses nothing).
  ARGV[3] json  {specialist_id, to_type, minted}
  Returns {perf: {field: value}} (the record to carry over; absent when none), or {taken: true}
  when a minted id is registered here. Errors: 3 registered here.
  Writes: moved:<id>.
]]
local specialist_id = ARGS.specialist_id
if spec_get(specialist_id) then
  if ARGS.minted then
    return done({taken = true})
  end
  return fail(3, 'specialist ' .. specialist_id .. ' is registered as type ' .. SLOT
    .. '; deregister it before registering it as ' .. ARGS.to_type)
end
rcall('SET', key('moved', specialist_id), ARGS.to_type)
local flat = rcall('HGETALL', key('perf', specialist_id))
local perf = {}
for i = 1, #flat, 2 do perf[flat[i]] = flat[i + 1] end
if #flat == 0 then
  return done({})
end
return done({perf = perf})
