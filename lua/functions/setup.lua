--[[
  setup: a slot's policy, and state a rebuild writes back.

  adopt    KEYS[1] meta of a type's slot; ARGV[1] fingerprint, ARGV[2] the type, ARGV[3]
           fallback type ('' none), ARGV[4..7] the four weights, ARGV[8] default max
           concurrency, ARGV[9] lease ttl ms, ARGV[10] max attempts, ARGV[11] outbox bound (0:
           no outbox), ARGV[12] watch channel, ARGV[13] retention ms, ARGV[14] namespace,
           ARGV[15] '1': replace another fingerprint. Writes the policy into `meta` (the only
           function that does not check the fingerprint), makes sure `free` and `leases` hold
           their sentinel (so they stay skiplists), and after replacing other rules refiles every
           specialist of the type under the new weights.
           -> {0, 'same' | 'new'}, {0, 'adopted', the replaced fingerprint}, or {0, 'other',
           the fingerprint found} (without ARGV[15]: nothing written).
  restore  KEYS[1] meta; writes back, without routing, what Postgres kept and an empty Redis
           lost (src/store/production/rebuild.rs). ARGV[4] 'held': an ASSIGNED subtask with its
           holder, epoch and attempt (ARGV[5] id, [6] spec, [7] capabilities, [8] all, [9]
           priority, [10] created ms, [11] holder, [12] epoch, [13] attempt, [14] assigned ms);
           replies {0, 0} when the holder is not registered in this slot. 'epoch': the type's
           epoch counter raised to ARGV[5]. 'subtask': a finished subtask that an
           unfinished one depends on (ARGV[5] id, [6] the subtask as submitted, [7]
           capabilities, [8] '1' all, [9] priority, [10] created ms, [11] state, [12] attempt,
           [13] detail, [14] finished ms); or 'perf': a performance record (ARGV[5] specialist
           id, [6] completed, [7] succeeded, [8] quality sum, [9] time sum, [10] window).
           -> {0, 1 written / 0 present already}. No events (Postgres has them).
]]

local function fn_adopt(KEYS, ARGV)
  bind()
  local meta = KEYS[1]
  local fingerprint = ARGV[1]
  local current = rcall('HGET', meta, 'fp')
  local prefix = ssub(meta, 1, #meta - 4)
  if current == fingerprint then
    rcall('ZADD', prefix .. K.free, 'NX', 'inf', SENTINEL)
    rcall('ZADD', prefix .. K.leases, 'NX', 'inf', SENTINEL)
    return {0, 'same'}
  end
  if current and ARGV[15] ~= '1' then return {0, 'other', current} end
  rcall('HSET', meta, 'fp', fingerprint, 'type', ARGV[2], 'fb', ARGV[3], 'wc', ARGV[4],
    'wl', ARGV[5], 'wa', ARGV[6], 'wp', ARGV[7], 'dmc', ARGV[8], 'ttl', ARGV[9], 'ma', ARGV[10],
    'ob', ARGV[11], 'ch', ARGV[12], 'ret', ARGV[13], 'ns', ARGV[14])
  rcall('ZADD', prefix .. K.free, 'inf', SENTINEL)
  rcall('ZADD', prefix .. K.leases, 'inf', SENTINEL)
  -- Calls of this library under the replaced rules are refused from now on (begin reads back).
  POLICIES = {}
  if not current then return {0, 'new'} end
  begin({meta}, {fingerprint, '', ''}, E.SPECIALIST_NOT_FOUND)
  local ids = rcall('ZRANGE', P .. K.specs, 0, -1)
  for i = 1, #ids do
    local s = spec_get(ids[i])
    if s then refile(s) end
  end
  return flush({0, 'adopted', current})
end

-- The type's epoch counter, raised to at least `epoch` (never lowered).
local function raise_epoch(epoch)
  local current = tonum(rcall('GET', P .. K.epoch) or '0')
  if epoch > current then rcall('SET', P .. K.epoch, sformat('%d', epoch)) end
end

-- An ASSIGNED subtask back with its holder, epoch and attempt; false when the holder is not
-- registered here (the store routes it again then).
local function restore_held(ARGV)
  local id = ARGV[5]
  if rcall('EXISTS', P .. K.subtask .. id) == 1 then return true end
  local s = spec_get(ARGV[11])
  if not s then return false end
  local r = {
    id = id, st = 'ASSIGNED', att = ARGV[13], hold = s.id, ep = ARGV[12], at = ARGV[14], bd = '',
    qs = '', enq = ARGV[10], wait = '', rw = '', excl = '', cr = ARGV[10], fin = '', hd = '',
    det = '', caps = ARGV[7], all = ARGV[8], prio = ARGV[9], lf = '', from = '', vd = '',
    spec = ARGV[6], required = false, needles = false, learned = false, excluded = false,
    packed = false
  }
  local _, matched = capabilities_suffice(r, s)
  -- The breakdown's inputs as of now: the history keeps the score, not its inputs.
  r.bd = sformat('%d %d %d %s %d/%d', matched, #sub_required(r), s.act, s.av, s.ws, s.wn)
  sub_new(r)
  spec_set(s, 'act', s.act + 1)
  spec_set(s, 'hl', list_append(s.hl, id))
  refile(s)
  raise_epoch(tonum(ARGV[12]))
  return true
end

local function fn_restore(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  if ARGV[4] == 'held' then
    if restore_held(ARGV) then return flush({0, 1}) end
    return {0, 0}
  end
  if ARGV[4] == 'epoch' then
    raise_epoch(tonum(ARGV[5]))
    return {0, 1}
  end
  if ARGV[4] == 'subtask' then
    local id = ARGV[5]
    if rcall('EXISTS', P .. K.subtask .. id) == 1 then return {0, 0} end
    local finished = ARGV[14]
    sub_new({
      id = id, st = ARGV[11], att = ARGV[12], hold = '', ep = '0', at = '', bd = '', qs = '',
      enq = ARGV[10], wait = '', rw = '', excl = '', cr = ARGV[10], fin = finished, hd = '',
      det = ARGV[13], caps = ARGV[7], all = ARGV[8], prio = ARGV[9], lf = '', from = '',
      vd = '', spec = ARGV[6], packed = false
    })
    if finished ~= '' then rcall('ZADD', P .. K.done, finished, id) end
    return flush({0, 1})
  end
  rcall('HSET', P .. K.perf .. ARGV[5], 'n', ARGV[6], 'ok', ARGV[7], 'q', ARGV[8], 't', ARGV[9],
    'w', ARGV[10])
  return {0, 1}
end
