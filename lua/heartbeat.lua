--[[
  heartbeat: renew a specialist's lease and set its availability (none given: keep it, except that
  OFFLINE comes back ONLINE); back from OFFLINE or a lapsed lease, it takes queued work it can serve.
  ARGV[3] json  {specialist_id, availability|null}
  Returns {specialist}. Errors: 1 unknown specialist.
  Events: specialist_availability (outbox) when it changed, ASSIGNED (watch) per drained subtask.
]]
local specialist_id = ARGS.specialist_id
local spec = spec_get(specialist_id)
if not spec then
  return fail(1, 'specialist ' .. specialist_id .. ' not found')
end
local could_take_work = can_take_work(spec)
local availability = ARGS.availability
if availability == nil or availability == cjson.null then
  if spec.avail == 'offline' then availability = 'online' else availability = spec.avail end
end
local lease = NOW + POLICY.lease_ttl_ms
spec_write('HSET', specialist_id, 'avail', availability, 'hb', NOW, 'lease', lease)
rcall('ZADD', key('leases'), lease, specialist_id)
reindex_free(specialist_id)
if not could_take_work and can_take_work(spec_get(specialist_id)) then
  drain_for(specialist_id)
end
if availability ~= spec.avail then
  outbox({kind = 'specialist_availability', specialist_id = specialist_id,
    availability = availability})
end
return done({specialist = specialist_json(spec_get(specialist_id))})
