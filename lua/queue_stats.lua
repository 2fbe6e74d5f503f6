--[[
  queue_stats: per configured type (or one): queue depth, oldest wait, specialists per
  availability (a lapsed lease counts as offline), active assignments, blocked, free capacity.
  ARGV[3] json  {specialist_type|null}
  Returns {types[]}. Writes nothing. Cost: O(specialists of the type) for the counts.
]]
local types = {}
for _, spec_type in ipairs(POLICY.types) do
  if ARGS.specialist_type == nil or ARGS.specialist_type == cjson.null
    or ARGS.specialist_type == spec_type then
    local counts = {online = 0, idle = 0, busy = 0, away = 0, offline = 0}
    local active, free = 0, 0
    for _, specialist_id in ipairs(rcall('ZRANGE', key('specs', spec_type), 0, -1)) do
      local spec = spec_get(specialist_id)
      if spec then
        local availability = spec.avail
        if spec.lease <= NOW then availability = 'offline' end
        counts[availability] = counts[availability] + 1
        active = active + spec.active
        free = free + free_slots(spec)
      end
    end
    local oldest_wait = 0
    local oldest = rcall('ZRANGE', key('qage', spec_type), 0, 0, 'WITHSCORES')
    if #oldest > 0 then oldest_wait = math.max(NOW - tonumber(oldest[2]), 0) end
    table.insert(types, {
      specialist_type = spec_type, depth = rcall('ZCARD', key('queue', spec_type)),
      oldest_wait_ms = oldest_wait, specialists = counts, active_assignments = active,
      blocked = rcall('SCARD', key('blocked', spec_type)), free_capacity = free
    })
  end
end
return done({types = types})
