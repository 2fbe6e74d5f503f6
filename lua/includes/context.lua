--[[
  context: what one function call knows, and how it ends.

  Every function of the library is called the same way:
    KEYS[1]  the slot's meta key `sb:{<namespace>:<type>}:meta`; or, when ARGV[3] names the
             namespace (one Redis, not a cluster), the directory key of an id
             (`sb:{<namespace>/s/<id>}` or `sb:{<namespace>/t/<id>}`), whose value is the type:
             the function finds the slot itself, so a call by id is one round trip
    ARGV[1]  the fingerprint of the policy and library the caller runs with; it must equal the
             slot's `fp` (a replica with other rules is refused, never mixed in)
    ARGV[2]  the clock in ms; empty: Redis TIME, the one clock (tests pin it)
    ARGV[3]  '' or the namespace (see KEYS[1])
    ARGV[4..] the function's own arguments, positional
  and replies {0, ...} or {error code, ...} (codes: the generated table E).

  `begin` sets the clock, the slot's key prefix P and its policy POL (decoded once per slot and
  fingerprint, then kept in this library's memory) and empties the call's record caches.
  Records are read once per call into tables (spec_get, sub_get), changed in place through
  spec_set / sub_set, and written once each by `flush` at the end of the call, which then
  appends the call's outbox entries.
]]
-- redis.call exists only while a function runs (not while the library loads): bound by begin.
local rcall

-- The call in progress (set by begin).
local NOW, P, META, TYPE, POL

-- Slot meta key -> decoded policy, for the fingerprint it was decoded under.
local POLICIES = {}

-- Per call: records read (false: known missing), and which fields of which records changed.
local SPECS, SUBS
local SPEC_DIRTY, SPEC_ORDER, SUB_DIRTY, SUB_ORDER
-- Per call: subtasks created (id -> true) and changed (in order), for the outbox; whether
-- dependents in other slots were left notices.
local CREATED, TOUCHED, TOUCHED_ORDER, NOTIFIED
-- Per call: the completion report that finished a subtask ({id, ok, ms, q}), for its outbox entry.
local REPORT
-- Per call: answers of "could anyone of this type serve these capabilities".
local CAPABLE

local function decode_policy(meta)
  local flat = rcall('HGETALL', meta)
  local raw = {}
  for i = 1, #flat, 2 do raw[flat[i]] = flat[i + 1] end
  local weights = {tonumber(raw.wc), tonumber(raw.wl), tonumber(raw.wa), tonumber(raw.wp)}
  return {
    fp = raw.fp, type = raw.type, fallback = raw.fb or '', weights = weights,
    default_max = tonumber(raw.dmc), lease_ttl = tonumber(raw.ttl),
    max_attempts = tonumber(raw.ma), outbox_bound = tonumber(raw.ob),
    outbox = tonumber(raw.ob) > 0, channel = raw.ch, retention = tonumber(raw.ret),
    namespace = raw.ns
  }
end

-- Starts a call. Returns nil when it may go on, else its reply: {missing} when KEYS[1] is a
-- directory key naming nothing, {E.POLICY, fingerprint found, meta key} when the slot runs other
-- rules (or was never set up: fingerprint '').
local function begin(keys, args, missing)
  rcall = redis.call
  local namespace = args[3]
  if namespace ~= '' then
    local bound = rcall('GET', keys[1])
    if not bound then return {missing} end
    META = 'sb:{' .. namespace .. ':' .. bound .. '}:meta'
  else
    META = keys[1]
  end
  local fingerprint = rcall('HGET', META, 'fp')
  if fingerprint ~= args[1] then return {E.POLICY, fingerprint or '', META} end
  local policy = POLICIES[META]
  if not policy or policy.fp ~= fingerprint then
    policy = decode_policy(META)
    POLICIES[META] = policy
  end
  POL = policy
  TYPE = policy.type
  P = string.sub(META, 1, #META - 4)
  if args[2] ~= '' then
    NOW = tonumber(args[2])
  else
    local time = rcall('TIME')
    NOW = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  end
  SPECS, SUBS = {}, {}
  SPEC_DIRTY, SPEC_ORDER, SUB_DIRTY, SUB_ORDER = {}, {}, {}, {}
  CREATED, TOUCHED, TOUCHED_ORDER, NOTIFIED, REPORT = {}, {}, {}, false, nil
  CAPABLE = {}
  return nil
end

local function refuse(code, ...)
  return {code, ...}
end
