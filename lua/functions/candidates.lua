--[[
  candidates: who could take a new subtask right now (the eligible specialists of the type it
  would be routed to, in pick-index order), with what a learned scorer needs to know of them. The
  store answers "none" itself when the subtask exists already or waits on an unfinished
  dependency; this routes like assign. Writes nothing.
  KEYS[1]  meta of the requested type's slot (or of the fallback's, forwarded)
  ARGV[4]  required capabilities   ARGV[5] '1' require all   ARGV[6] '1' forwarded here
  ARGV[7]  fallback capable: '', '1' or '0'
  Replies {0, 'candidates', {id, capabilities, active, max, availability, window successes,
  window outcomes} ...}, or {0, 'ask' | 'forward', type} as assign.
  Cost: O(specialists of the type with room).
]]

local function fn_candidates(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local r = {id = '', caps = ARGV[4], all = ARGV[5], excl = '', lf = '', required = false,
    needles = false}
  local required = sub_required(r)
  if ARGV[6] ~= '1' and not any_capable(required, ARGV[5] == '1') then
    local fallback = POL.fallback
    if fallback ~= '' and fallback ~= TYPE then
      if ARGV[7] == '' then return {0, 'ask', fallback} end
      if ARGV[7] == '1' then return {0, 'forward', fallback} end
    end
  end
  local found = {}
  local members = rcall('ZRANGE', P .. K.free, 0, -1)
  for i = 1, #members do
    local member = members[i]
    if member ~= SENTINEL then
      local s = spec_get(ssub(member, 33))
      if s and free_slots(s) > 0 then
        if capabilities_suffice(r, s) then
          found[#found + 1] = {s.id, s.caps, s.act, s.max, s.av, s.ws, s.wn}
        end
      end
    end
  end
  return {0, 'candidates', found}
end
