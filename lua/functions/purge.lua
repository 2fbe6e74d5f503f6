--[[
  purge: retires finished subtasks whose retention has passed, after the store removed their
  directory entries and the marks other types kept of them (so a new subtask can take the id).
  A listed subtask whose id was taken again meanwhile is left alone (unfinished: it only leaves
  `done`; finished again since: it stays listed for its own time).
  KEYS[1]  meta of the type's slot
  ARGV[4]  subtask ids
  Replies {0, how many records were deleted}.
]]

local function fn_purge(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local cutoff = NOW - POL.retention
  local ids = split(ARGV[4])
  local deleted = 0
  for i = 1, #ids do
    local id = ids[i]
    local r = sub_get(id)
    local finished = r and r.fin ~= ''
      and (r.st == 'COMPLETED' or r.st == 'FAILED' or r.st == 'CANCELLED')
    if finished and tonum(r.fin) <= cutoff then
      rcall('DEL', P .. K.subtask .. id, P .. K.deps .. id)
      rcall('ZREM', P .. K.done, id)
      sub_drop(id)
      deleted = deleted + 1
    elseif not finished then
      rcall('ZREM', P .. K.done, id)
    end
  end
  return flush({0, deleted})
end
