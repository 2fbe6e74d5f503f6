--[[
  heartbeat: renew a specialist's lease and set its availability (none given: keep it, except
  that OFFLINE comes back ONLINE); back from OFFLINE or a lapsed lease, it takes queued work it
  can serve.
  KEYS[1]  meta, or the specialist's directory key (see context.lua)
  ARGV[4]  specialist id   ARGV[5] availability ('' keep)   ARGV[6] the caller's incarnation
  Replies {0, specialist}. Refusals: SPECIALIST_NOT_FOUND, INCARNATION_ENDED (the one given).
  Outbox `A` when it changed.
]]

local function fn_heartbeat(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SPECIALIST_NOT_FOUND)
  if refused then return refused end
  local id = ARGV[4]
  local s = spec_get(id, 'display')
  if not s then return refuse(E.SPECIALIST_NOT_FOUND) end
  refused = incarnation_refused(s, ARGV[6])
  if refused then return refused end
  local could_take_work = can_take_work(s)
  local availability = ARGV[5]
  if availability == '' then
    availability = s.av
    if availability == 'offline' then availability = 'online' end
  end
  local lease = NOW + POL.lease_ttl
  spec_set(s, 'hb', NOW_TEXT)
  spec_set(s, 'lease', lease)
  rcall('ZADD', P .. K.leases, lease, id)
  if availability ~= s.av then
    spec_set(s, 'av', availability)
    refile(s)
    outbox('k', 'A', 'sp', id, 'av', availability)
  end
  if not could_take_work and can_take_work(s) then drain_for(s) end
  return flush({0, specialist_reply(s)})
end
