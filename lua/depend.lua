--[[
  depend: a new subtask in another slot waits on a subtask of this slot. Unless the dependency
  finished already, the dependent is added (once) to its `deps` list as "\0<type>\0<id>" (ids and
  types are printable, so this cannot be a local dependent's id); when the dependency finishes
  such entries go to the `notify` list.
  ARGV[3] json  {dependency, dependent, dependent_type}
  Returns {state: the dependency's state when it is finished, else null}.
  Errors: 2 unknown dependency. Writes: deps:<dependency>.
]]
local record = sub_get(ARGS.dependency)
if not record then
  return fail(2, 'subtask ' .. ARGS.dependency .. ' not found')
end
if record.state == 'COMPLETED' or record.state == 'FAILED' or record.state == 'CANCELLED' then
  return done({state = record.state})
end
local entry = '\0' .. ARGS.dependent_type .. '\0' .. ARGS.dependent
local list = key('deps', ARGS.dependency)
if not rcall('LPOS', list, entry) then
  rcall('RPUSH', list, entry)
end
return done({})
