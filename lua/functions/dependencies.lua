--[[
  dependencies across slots (see lifecycle.lua for those within one).

  depend  KEYS[1] meta of the dependency's slot; ARGV[4] dependency id, ARGV[5] dependent id,
          ARGV[6] the dependent's type. A new subtask in another slot waits on a subtask here:
          unless that finished already, the dependent is listed (once) in its `deps` as
          "\0<type>\0<id>" (ids and types are printable, so this is never a local id).
          -> {0, the dependency's state when finished, else ''}; SUBTASK_NOT_FOUND.
  settle  KEYS[1] meta of the dependent's slot; ARGV[4] dependent, ARGV[5] dependency, ARGV[6]
          the state it finished in. COMPLETED: the dependent stops waiting on it and, waiting on
          nothing more, is routed; FAILED or CANCELLED: it fails, and so do its own dependents.
          Twice does nothing more. -> {0, view, or '' when the dependent is unknown}.
]]

local function fn_depend(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local r = sub_get(ARGV[4])
  if not r then return refuse(E.SUBTASK_NOT_FOUND) end
  if r.st == 'COMPLETED' or r.st == 'FAILED' or r.st == 'CANCELLED' then
    return flush({0, r.st})
  end
  local entry = '\0' .. ARGV[6] .. '\0' .. ARGV[5]
  local list = P .. K.deps .. r.id
  if not rcall('LPOS', list, entry) then rcall('RPUSH', list, entry) end
  if r.hd ~= '1' then sub_set(r, 'hd', '1') end
  return flush({0, ''})
end

local function fn_settle(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local pending = {}
  settle_one(ARGV[4], ARGV[5], ARGV[6], pending)
  settle_from(pending)
  local r = sub_get(ARGV[4])
  if not r then return flush({0, ''}) end
  return flush({0, view(r)})
end
