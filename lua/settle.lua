--[[
  settle: a dependency in another slot finished; its dependent here learns the outcome (the
  store delivers the entries of that slot's `notify` list here, then removes them). COMPLETED:
  the dependent stops waiting on it and, waiting on nothing more, is routed. FAILED or
  CANCELLED: the dependent fails, and so do its own dependents. Delivering a notice twice does
  nothing more.
  ARGV[3] json  {dependent, dependency, state}
  Returns {view|null, notify?}. Events: subtask_changed (outbox), ASSIGNED (watch).
]]
local pending = {}
settle_one(ARGS.dependent, ARGS.dependency, ARGS.state, pending)
settle_from(pending)
local record = sub_get(ARGS.dependent)
if not record then
  return done({})
end
return done({view = view_of(record)})
