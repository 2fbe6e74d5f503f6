--[[
  release: the holder hands a subtask back (fenced by specialist and epoch). Its freed slot takes
  queued work first (not this subtask: a releaser is not offered it again), then the subtask goes
  to the head of its queue with attempt + 1 (FAILED past max attempts) and to whoever can take it.
  KEYS[1]  meta, or the subtask's directory key (see context.lua)
  ARGV[4]  subtask id   ARGV[5] specialist id   ARGV[6] epoch   ARGV[7] reason
  ARGV[8]  the holder's incarnation ('' none: fenced by the epoch alone)
  Replies {0, view}. Refusals as complete.
]]

local function fn_release(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local id, specialist_id = ARGV[4], ARGV[5]
  local s = spec_get(specialist_id)
  refused = incarnation_refused(s, ARGV[8])
  if refused then return refused end
  local r = sub_get(id)
  refused = fenced(r, specialist_id, ARGV[6])
  if refused then return refused end
  free_holder_slot(s, r)
  if r.excl == '' then
    sub_set(r, 'excl', specialist_id)
  else
    sub_set(r, 'excl', r.excl .. ' ' .. specialist_id)
  end
  r.excluded = false
  local detail = 'released by specialist ' .. specialist_id
  if ARGV[7] ~= '' then detail = detail .. ': ' .. ARGV[7] end
  if s then
    refile(s)
    drain_for(s)
  end
  requeue_or_place(r, detail)
  return flush({0, view(r)})
end
