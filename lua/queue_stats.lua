--[[
  queue_stats: this slot's type: queue depth, oldest wait, specialists per availability (a
  lapsed lease counts as offline), active assignments, blocked, free capacity. The store asks
  every configured type's slot in turn.
  ARGV[3] json  {}
  Returns {types[]} (this type). Writes nothing. Cost: O(specialists of the type) for the counts.
]]
local counts = {online = 0, idle = 0, busy = 0, away = 0, offline = 0}
local active, free = 0, 0
for _, specialist_id in ipairs(rcall('ZRANGE', key('specs'), 0, -1)) do
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
local oldest = rcall('ZRANGE', key('qage'), 0, 0, 'WITHSCORES')
if #oldest > 0 then oldest_wait = math.max(NOW - tonumber(oldest[2]), 0) end
return done({types = {{
  specialist_type = SLOT, depth = rcall('ZCARD', key('queue')),
  oldest_wait_ms = oldest_wait, specialists = counts, active_assignments = active,
  blocked = rcall('SCARD', key('blocked')), free_capacity = free
}}})
