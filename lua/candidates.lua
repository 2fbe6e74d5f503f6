--[[
  candidates: who could take a new subtask right now (the eligible specialists of the type it
  would be routed to, in pick-index order), with what a learned scorer needs to know of them.
  Empty when the subtask exists already or waits on an unfinished dependency.
  ARGV[3] json  {subtask_id, specialist_type, required_capabilities[], require_all_capabilities,
                 depends_on[]}
  Returns {candidates[]}. Writes nothing. Cost: O(specialists of the type with room).
]]
if rcall('EXISTS', key('sub', ARGS.subtask_id)) == 1 then
  return done({candidates = {}})
end
for _, dependency_id in ipairs(ARGS.depends_on) do
  if rcall('HGET', key('sub', dependency_id), 'state') ~= 'COMPLETED' then
    return done({candidates = {}})
  end
end
local required = ARGS.required_capabilities
local routed_type = routed_type_for(ARGS.specialist_type, required, ARGS.require_all_capabilities)
local candidates = {}
for _, member in ipairs(rcall('ZRANGE', key('free', routed_type), 0, -1)) do
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
