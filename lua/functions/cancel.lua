--[[
  cancel: QUEUED, BLOCKED or ASSIGNED -> CANCELLED (the holder gets REVOKED and its slot takes
  queued work); dependents fail. Cancelling a CANCELLED subtask returns it.
  KEYS[1]  meta, or the subtask's directory key (see context.lua)
  ARGV[4]  subtask id   ARGV[5] reason
  Replies {0, view}. Refusals: SUBTASK_NOT_FOUND, CANNOT_CANCEL (state).
]]

local function fn_cancel(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local r = sub_get(ARGV[4])
  if not r then return refuse(E.SUBTASK_NOT_FOUND) end
  if r.st == 'CANCELLED' then return flush({0, view(r)}) end
  if r.st == 'COMPLETED' or r.st == 'FAILED' then return refuse(E.CANNOT_CANCEL, r.st) end
  if r.st == 'QUEUED' then take_from_queue(r) end
  if r.st == 'BLOCKED' then unblock(r) end
  local detail = 'cancelled'
  if ARGV[5] ~= '' then detail = 'cancelled: ' .. ARGV[5] end
  local revoked = nil
  if r.st == 'ASSIGNED' then revoked = holder_of(r) end
  mark_finished(r, 'CANCELLED', detail)
  if revoked then
    sub_set(r, 'hold', '')
    publish(revoked[1], 'REVOKED', r, revoked)
    local s = spec_get(revoked[1])
    if s then
      free_holder_slot(s, r)
      refile(s)
      drain_for(s)
    end
  end
  settle_from({r})
  return flush({0, view(r)})
end
