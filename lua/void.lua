--[[
  void: the directory binds a subtask id to this slot's type, and a submission of another type
  found nothing of it in its own slot. If the subtask (or its forward mark) is here, it exists;
  otherwise the claim was left by a submission that failed (or is still on its way): the id is
  marked void here, so that submission, should it still come, is told to retry, and the store
  moves the claim to the new type.
  ARGV[3] json  {subtask_id, to_type}
  Returns {exists: bool}. Writes: mark:<id> ('void').
  ARGV[3]'s to_type is for the reader of the header: the mark does not name it.
]]
local subtask_id = ARGS.subtask_id
local mark = rcall('GET', key('mark', subtask_id))
if rcall('EXISTS', key('sub', subtask_id)) == 1 or (mark and mark ~= 'void') then
  return done({exists = true})
end
rcall('SET', key('mark', subtask_id), 'void')
return done({exists = false})
