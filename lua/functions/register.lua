--[[
  register: add a specialist or update its registration (its type is its slot's), renew its
  lease, and give it whatever queued work it can take now. The store's directory binds the id
  to this type first (and mints ids from this slot's `minted` counter).
  KEYS[1]  meta of the type's slot
  ARGV[4]  specialist id   ARGV[5] capabilities (sorted)   ARGV[6] max_concurrency ('' default)
  ARGV[7]  labels (opaque)   ARGV[8] availability   ARGV[9] '1': a minted id
  ARGV[10] '1': the id was just moved here (clear its moved mark)
  ARGV[11] the performance record carried over from the type it was bound to: "<n> <ok> <q> <t>
           <w>" (w '-' when empty), '!' (start empty), '' (nothing carried)
  ARGV[12] an incarnation   ARGV[13] what to do with it: 'keep' (the caller's live one: update
           the registration; an unknown id is registered under it), 'start' (a new one; SPECIALIST_LIVE while the current one's lease
           is live), 'take' (a new one whatever the current one's lease)
  A new incarnation of a registered id ends the current one: INC goes to its watchers, and
  what it held goes back to the head of its queue with attempt + 1 (FAILED past max attempts)
  and to whoever can take it, as when a lease lapses.
  Replies {0, 'ok', specialist, 1 created / 0 updated, incarnation}; {0, 'retry'} (the id moved
  to another type since the store read the directory); {0, 'taken'} (a minted id exists
  already). Refusals: SPECIALIST_LIVE (ms left on the lease), INCARNATION_ENDED (the one given).
  Writes s:<id> (inc; a new record takes its performance record from perf:<id>), specs, cap:<c>,
  free, leases, moved:<id>, perf:<id>, and what the drain assigns. Outbox `R`.
]]

-- Ends the specialist's current incarnation: its watchers hear of the new one, and what it held
-- is taken back as a spent attempt. Returns the subtasks requeued (to place once registered).
local function end_incarnation(s, incarnation)
  publish_incarnation(s.id, incarnation)
  local held = held_newest_first(s)
  spec_set(s, 'act', 0)
  spec_set(s, 'hl', '')
  local requeued = {}
  for i = 1, #held do
    local r = held[i]
    local revoked = holder_of(r)
    if requeue_or_fail(r, true, 'specialist ' .. s.id .. ' restarted (a new incarnation)') then
      requeued[#requeued + 1] = r
    end
    publish(s.id, 'REVOKED', r, revoked)
  end
  return requeued
end

local function fn_register(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SPECIALIST_NOT_FOUND)
  if refused then return refused end
  local id, caps = ARGV[4], ARGV[5]
  if rcall('EXISTS', P .. K.moved .. id) == 1 then
    if ARGV[10] ~= '1' then return {0, 'retry'} end
    rcall('DEL', P .. K.moved .. id)
  end
  local s = spec_get(id)
  if ARGV[9] == '1' and s then return {0, 'taken'} end
  local incarnation, mode = ARGV[12], ARGV[13]
  -- The same Register run twice (a cluster client sends a call again when its first reply is
  -- late): the incarnation it started is live, and the second one keeps it.
  if s and s.inc == incarnation then mode = 'keep' end
  if mode == 'keep' then
    -- An unknown id (deregistered, or lost with Redis's data) is registered anew under it.
    refused = incarnation_refused(s, incarnation)
    if refused then return refused end
  elseif s and mode ~= 'take' and s.lease > NOW then
    return refuse(E.SPECIALIST_LIVE, s.lease - NOW)
  end
  local perf_key = P .. K.perf .. id
  local carried = ARGV[11]
  if carried ~= '' then
    rcall('DEL', perf_key)
    if carried ~= '!' then
      local fields = split(carried)
      local window = fields[5]
      if window == '-' then window = '' end
      rcall('HSET', perf_key, 'n', fields[1], 'ok', fields[2], 'q', fields[3], 't', fields[4],
        'w', window)
    end
  end
  local max = tonum(ARGV[6]) or POL.default_max
  local lease = NOW + POL.lease_ttl
  local old_caps = {}
  local created = 0
  local requeued = {}
  if s and mode ~= 'keep' then requeued = end_incarnation(s, incarnation) end
  if s then
    spec_display(s)
    old_caps = spec_caps(s)
    spec_set(s, 'caps', caps)
    spec_set(s, 'max', max)
    spec_set(s, 'lab', ARGV[7])
    spec_set(s, 'av', ARGV[8])
    spec_set(s, 'hb', NOW_TEXT)
    spec_set(s, 'lease', lease)
  else
    created = 1
    local perf = rcall('HMGET', perf_key, 'n', 'ok', 'q', 't', 'w')
    local window = perf[5] or ''
    s = {
      id = id, inc = incarnation, caps = caps, max = max, av = ARGV[8], lease = lease, act = 0,
      lseq = 0, fm = '', hl = '',
      ws = window_successes(window), wn = #window, pn = tonum(perf[1] or '0'),
      pok = tonum(perf[2] or '0'), pq = perf[3] or '0', pt = perf[4] or '0', w = window,
      reg = NOW_TEXT, hb = NOW_TEXT, lab = ARGV[7], padded = false, list = false, dirty = false,
      new = false
    }
    spec_new(s)
    rcall('ZADD', P .. K.specs, 0, id)
  end
  local new_caps = spec_caps(s)
  local old_set, new_set = set_of(old_caps), set_of(new_caps)
  for i = 1, #old_caps do
    if not new_set[old_caps[i]] then rcall('SREM', P .. K.cap .. old_caps[i], id) end
  end
  for i = 1, #new_caps do
    if not old_set[new_caps[i]] then rcall('SADD', P .. K.cap .. new_caps[i], id) end
  end
  capabilities_changed()
  rcall('ZADD', P .. K.leases, lease, id)
  spec_set(s, 'inc', incarnation)
  refile(s)
  place_all(requeued)
  drain_for(s)
  outbox('k', 'R', 'sp', id, 'caps', caps, 'max', max, 'lab', ARGV[7], 'av', ARGV[8], 'inc',
    incarnation)
  return flush({0, 'ok', specialist_reply(s), created, incarnation})
end
