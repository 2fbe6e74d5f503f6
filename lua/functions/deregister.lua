--[[
  deregister: remove a specialist; what it held goes back to the head of its queue with the same
  attempt (leaving is not a failed try) and to whoever can take it now. Its performance record
  is kept (perf:<id>).
  KEYS[1]  meta, or the specialist's directory key (see context.lua)
  ARGV[4]  specialist id
  Replies {0, held subtask ids, oldest first}. Refusals: SPECIALIST_NOT_FOUND.
  Events: REVOKED per held subtask, then END (its watch streams close); outbox `D`, `s`.
]]

local function fn_deregister(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SPECIALIST_NOT_FOUND)
  if refused then return refused end
  local id = ARGV[4]
  local s = spec_get(id)
  if not s then return refuse(E.SPECIALIST_NOT_FOUND) end
  rcall('ZREM', P .. K.specs, id)
  local caps = spec_caps(s)
  for i = 1, #caps do rcall('SREM', P .. K.cap .. caps[i], id) end
  capabilities_changed()
  if s.fm ~= '' then rcall('ZREM', P .. K.free, s.fm) end
  rcall('ZREM', P .. K.leases, id)
  local held = held_newest_first(s)
  spec_perf(s)
  if s.pn > 0 then
    rcall('HSET', P .. K.perf .. id, 'n', s.pn, 'ok', s.pok, 'q', s.pq, 't', s.pt, 'w', s.w)
  end
  rcall('DEL', P .. K.specialist .. id)
  spec_drop(id)
  for i = 1, #held do
    local r = held[i]
    local revoked = holder_of(r)
    requeue_or_fail(r, false, 'specialist ' .. id .. ' deregistered')
    publish(id, 'REVOKED', r, revoked)
  end
  publish_end(id)
  place_all(held)
  outbox('k', 'D', 'sp', id)
  local oldest_first = {}
  for i = #held, 1, -1 do oldest_first[#oldest_first + 1] = held[i].id end
  return flush({0, oldest_first})
end
