--[[
  expire: the lease sweep of one type. Specialists whose lease lapsed become OFFLINE; each subtask
  they held goes back to the head of its queue with attempt + 1 (FAILED past max attempts) and
  to whoever can take it now. Any replica may run it any time; twice does nothing more. It also
  lists subtasks finished longer than the retention ago, for the store to retire (`purge`).
  KEYS[1]  meta of the type's slot
  ARGV[4]  at most this many lapsed specialists   ARGV[5] at most this many finished subtasks
  ARGV[6]  lapse leases only if Redis runs this before this time (ms): a sweep Redis held while it
           was stalled, and runs after the caller gave up on it, lapses nothing (the agents could
           not heartbeat through the stall either); 0: lapse nothing (a lapse hold is in force)
  Replies {0, expired ids, requeued, failed, 1 when more lapsed remain, retirable: id, the type
  that forwarded it ('' none), the type whose claim on it was voided ('' none), ...}.
  Events: REVOKED/ASSIGNED; outbox `A`, `s`.
]]

local function fn_expire(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SPECIALIST_NOT_FOUND)
  if refused then return refused end
  local limit = tonum(ARGV[4])
  if NOW > tonum(ARGV[6]) then limit = 0 end
  local lapsed = {}
  if limit > 0 then
    lapsed = rcall('ZRANGE', P .. K.leases, '-inf', NOW, 'BYSCORE', 'LIMIT', 0, limit)
  end
  tsort(lapsed, bytes_less)
  local expired, requeued_records = {}, {}
  local requeued, failed = 0, 0
  for i = 1, #lapsed do
    local id = lapsed[i]
    rcall('ZREM', P .. K.leases, id)
    local s = spec_get(id)
    if s and (s.av ~= 'offline' or s.act > 0) then
      local was_offline = s.av == 'offline'
      local held = held_newest_first(s)
      spec_set(s, 'av', 'offline')
      spec_set(s, 'act', 0)
      spec_set(s, 'hl', '')
      refile(s)
      for j = 1, #held do
        local r = held[j]
        local revoked = holder_of(r)
        if requeue_or_fail(r, true, 'lease of specialist ' .. id .. ' lapsed') then
          requeued = requeued + 1
          requeued_records[#requeued_records + 1] = r
        else
          failed = failed + 1
        end
        publish(id, 'REVOKED', r, revoked)
      end
      if not was_offline then outbox('k', 'A', 'sp', id, 'av', 'offline') end
      expired[#expired + 1] = id
    end
  end
  place_all(requeued_records)
  local more = 0
  if limit > 0 and #lapsed >= limit then more = 1 end
  local retirable = {}
  local finished = rcall('ZRANGE', P .. K.done, '-inf', NOW - POL.retention, 'BYSCORE', 'LIMIT',
    0, tonum(ARGV[5]))
  for i = 1, #finished do
    local marks = rcall('HMGET', P .. K.subtask .. finished[i], 'from', 'vd')
    retirable[#retirable + 1] = finished[i]
    retirable[#retirable + 1] = marks[1] or ''
    retirable[#retirable + 1] = marks[2] or ''
  end
  return flush({0, expired, requeued, failed, more, retirable})
end
