--[[
  capable: whether any registered specialist of this slot's type (whatever its availability)
  could serve a subtask: the fallback type's answer that assign and candidates ask for.
  ARGV[3] json  {required_capabilities[], require_all_capabilities}
  Returns {capable}. Writes nothing. Cost: O(1) (SINTERCARD with LIMIT 1 for require-all).
]]
return done({capable = any_capable(ARGS.required_capabilities, ARGS.require_all_capabilities)})
