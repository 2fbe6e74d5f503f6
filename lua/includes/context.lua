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
  A record is read once per call into a table (spec_get, sub_get), changed in place (spec_set,
  sub_set), and written once by `flush` at the end of the call, which then appends the call's
  outbox entries. Moving a value between Redis and Lua costs about as much as a small command
  here, so a record keeps its fields packed in a few hash fields (specialists.lua,
  subtasks.lua), and the hot paths build no tables they do not need.
]]

-- redis.call exists only while a function runs (not while the library loads), and so do the
-- standard libraries: `bind` (begin calls it) keeps what the library uses in locals, which are
-- cheaper to reach than globals.
local rcall, smatch, ssub, sformat, sfind, sgsub, sgmatch, sbyte, tconcat, tremove, tsort, tonum
local mmin, mmax, mfloor, unpack_

local function bind()
  if rcall then return end
  rcall, smatch, ssub, sformat = redis.call, string.match, string.sub, string.format
  sfind, sgsub, sgmatch, sbyte = string.find, string.gsub, string.gmatch, string.byte
  tconcat, tremove, tsort, tonum = table.concat, table.remove, table.sort, tonumber
  mmin, mmax, mfloor, unpack_ = math.min, math.max, math.floor, unpack
end

-- The call in progress (set by begin).
local NOW, NOW_TEXT, P, META, TYPE, POL

-- Slot meta key -> decoded policy, for the fingerprint it was decoded under, and when the slot's
-- fingerprint was last read back.
local POLICIES = {}
local POLICY_RECHECK_MS = 1000

-- Per call: records read (id -> record, false: known missing); records to write (in order);
-- subtasks changed, for the outbox (in order); whether dependents in other slots were left
-- notices; the completion report that finished a subtask ({id, ok, ms, q}); answers of "could
-- anyone of this type serve these capabilities" (made on first use).
local SPECS, SUBS, SPEC_WRITES, SUB_WRITES, TOUCHED, NOTIFIED, REPORT, CAPABLE

local function decode_policy(meta)
  local flat = rcall('HGETALL', meta)
  local raw = {}
  for i = 1, #flat, 2 do raw[flat[i]] = flat[i + 1] end
  local weights = {tonum(raw.wc), tonum(raw.wl), tonum(raw.wa), tonum(raw.wp)}
  return {
    fp = raw.fp, checked = 0, type = raw.type, fallback = raw.fb or '', weights = weights,
    default_max = tonum(raw.dmc), lease_ttl = tonum(raw.ttl),
    max_attempts = tonum(raw.ma), outbox_bound = tonum(raw.ob),
    outbox = tonum(raw.ob) > 0, channel = raw.ch, retention = tonum(raw.ret),
    namespace = raw.ns
  }
end

-- Starts a call. Returns nil when it may go on, else its reply: {missing} when KEYS[1] is a
-- directory key naming nothing, {E.POLICY, fingerprint found, meta key} when the slot runs other
-- rules (or was never set up: fingerprint '').
local function begin(keys, args, missing)
  bind()
  local namespace = args[3]
  if namespace ~= '' then
    local bound = rcall('GET', keys[1])
    if not bound then return {missing} end
    META = type_prefix(namespace, bound) .. K.meta
  else
    META = keys[1]
  end
  if args[2] ~= '' then
    NOW = tonum(args[2])
  else
    local time = rcall('TIME')
    NOW = time[1] * 1000 + mfloor(time[2] / 1000)
  end
  NOW_TEXT = sformat('%d', NOW)
  local policy = POLICIES[META]
  if not policy or policy.fp ~= args[1] or NOW - policy.checked >= POLICY_RECHECK_MS
    or NOW < policy.checked then
    -- Read back from the slot at most every POLICY_RECHECK_MS: a replica whose rules another
    -- replica replaced is refused within that (adopt in this library clears the cache at once).
    local fingerprint = rcall('HGET', META, 'fp')
    if fingerprint ~= args[1] then
      POLICIES[META] = nil
      return {E.POLICY, fingerprint or '', META}
    end
    if not policy or policy.fp ~= fingerprint then policy = decode_policy(META) end
    policy.checked = NOW
    POLICIES[META] = policy
  end
  POL = policy
  TYPE = policy.type
  P = ssub(META, 1, #META - #K.meta)
  SPECS, SUBS, SPEC_WRITES, SUB_WRITES, TOUCHED = {}, {}, {}, {}, {}
  NOTIFIED, REPORT, CAPABLE = false, nil, nil
  return nil
end

local function refuse(code, ...)
  return {code, ...}
end
