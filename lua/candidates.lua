--[[
  candidates: who could take a new subtask right now (the eligible specialists of the type it
  would be routed to, in pick-index order), with what a learned scorer needs to know of them.
  The store answers "none" itself when the subtask exists already or waits on an unfinished
  dependency (it reads those through its directory); this script routes like assign.lua.
  ARGV[3] json  {required_capabilities[], require_all_capabilities, routed (forwarded here: no
                 routing), fallback_capable (null until the fallback type was asked)}
  Returns {candidates[]}, or {ask_fallback: type} / {forward: type} as assign.lua (nothing is
  written either way). Cost: O(specialists of the type with room).
]]
local required = ARGS.required_capabilities
if not ARGS.routed then
  local route = route_new(required, ARGS.require_all_capabilities, ARGS.fallback_capable)
  if route == 'ask' then
    return done({ask_fallback = POLICY.fallback})
  elseif route == 'forward' then
    return done({forward = POLICY.fallback})
  end
end
local candidates = {}
for _, member in ipairs(rcall('ZRANGE', key('free'), 0, -1)) do
  local spec = spec_get(string.match(member, '^%d+:%d+:(.*)$'))
  if spec and free_slots(spec) > 0
    and capabilities_suffice(caps_set_of(spec.caps), required, ARGS.require_all_capabilities) then
    local recent = rcall('HGET', key('perf', spec.id), 'w') or ''
    local _, successes = string.gsub(recent, '1', '1')
    table.insert(candidates, {
      specialist_id = spec.id, specialist_type = spec.type, capabilities = spec.caps,
      active = spec.active, max_concurrency = spec.max, availability = spec.avail,
      recent_successes = successes, recent_outcomes = #recent,
      rule_performance = fmt(performance_factor(spec.id))
    })
  end
end
return done({candidates = candidates})
