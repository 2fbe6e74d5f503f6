--[[
  specialists: the record `s:<id>` (hash), the free index `free` (who has room, best possible
  score first) and the capability index `cap:<capability>` (sets).

  Record fields, each part tab-joined in this order:
    caps  its capabilities, sorted, space-joined
    r     max (max_concurrency), av (availability), lease (expiry ms), act (subtasks held), lseq
          (epoch of its latest hand-out, 0 never), fm (its free-index member, '' without room),
          ws and wn (successes and outcomes in its performance window), hl (the subtasks it
          holds, by epoch, space-joined: last)
    p     its performance record while registered: pn and pok (reports, successes), pq and pt
          (quality and time sums, %.17g), w (the last WINDOW outcomes as 1/0)
    d     for display: reg and hb (registered, last heartbeat ms), lab (labels, opaque, last)
  inc   its incarnation: the session id of the process that registered it last (a record from
        before incarnations has none).
  `perf:<id>` (hash n, ok, q, t, w) keeps the performance record while the id is not registered
  (written when it deregisters, read when it registers), so it outlives a registration.
]]

local R_PATTERN = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t'
  .. '([^\t]*)\t(.*)$'
local P_PATTERN = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$'
local D_PATTERN = '^([^\t]*)\t([^\t]*)\t(.*)$'

-- Which part each field lives in (what flush writes when the field changed).
local SPEC_PART = {
  caps = 'caps', max = 'r', av = 'r', lease = 'r', act = 'r', lseq = 'r', fm = 'r', ws = 'r',
  wn = 'r', hl = 'r', inc = 'inc', pn = 'p', pok = 'p', pq = 'p', pt = 'p', w = 'p', reg = 'd', hb = 'd', lab = 'd'
}

local function spec_record(id, caps, r)
  local max, av, lease, act, lseq, fm, ws, wn, hl = smatch(r, R_PATTERN)
  return {
    id = id, caps = caps, max = tonum(max), av = av, lease = tonum(lease),
    act = tonum(act), lseq = tonum(lseq), fm = fm, ws = tonum(ws), wn = tonum(wn), hl = hl,
    pn = false, pok = false, pq = false, pt = false, w = false, reg = false, hb = false,
    lab = false, padded = false, list = false, dirty = false, new = false
  }
end

local function spec_load_perf(s, p)
  local pn, pok, pq, pt, w = smatch(p or '0\t0\t0\t0\t', P_PATTERN)
  s.pn, s.pok, s.pq, s.pt, s.w = tonum(pn), tonum(pok), pq, pt, w
end

local function spec_load_display(s, d)
  local reg, hb, lab = smatch(d or '0\t0\t', D_PATTERN)
  s.reg, s.hb, s.lab = reg, hb, lab
end

-- also: 'perf' reads the performance record too (a report updates it); 'display' the display
-- part (a call whose reply shows the specialist).
local function spec_get(id, also)
  local cached = SPECS[id]
  if cached ~= nil then return cached or nil end
  local values
  if also == 'perf' then
    values = rcall('HMGET', P .. K.specialist .. id, 'caps', 'r', 'inc', 'p')
  elseif also == 'display' then
    values = rcall('HMGET', P .. K.specialist .. id, 'caps', 'r', 'inc', 'd')
  else
    values = rcall('HMGET', P .. K.specialist .. id, 'caps', 'r', 'inc')
  end
  if not values[2] then
    SPECS[id] = false
    return nil
  end
  local s = spec_record(id, values[1], values[2])
  s.inc = values[3] or ''
  if also == 'perf' then spec_load_perf(s, values[4]) end
  if also == 'display' then spec_load_display(s, values[4]) end
  SPECS[id] = s
  return s
end

-- The performance record of a specialist read without it.
local function spec_perf(s)
  if not s.pn then spec_load_perf(s, rcall('HGET', P .. K.specialist .. s.id, 'p')) end
end

-- The display part, read only when a reply shows it.
local function spec_display(s)
  if not s.reg then spec_load_display(s, rcall('HGET', P .. K.specialist .. s.id, 'd')) end
end

local function spec_dirty(s, part)
  local dirty = s.dirty
  if not dirty then
    dirty = {}
    s.dirty = dirty
    SPEC_WRITES[#SPEC_WRITES + 1] = s
  end
  dirty[part] = true
end

local function spec_set(s, field, value)
  s[field] = value
  if field == 'caps' then
    s.padded = false
    s.list = false
  end
  spec_dirty(s, SPEC_PART[field])
end

-- A record made in this call (every part is written).
local function spec_new(s)
  SPECS[s.id] = s
  s.new = true
  s.dirty = {caps = true, r = true, p = true, d = true, inc = true}
  SPEC_WRITES[#SPEC_WRITES + 1] = s
end

-- The record is deleted: nothing of it is written.
local function spec_drop(id)
  SPECS[id] = false
end

-- The routing part as stored (one format call: cheaper than converting each number alone).
local function pack_r(s)
  return sformat('%d\t%s\t%d\t%d\t%d\t%s\t%d\t%d\t%s', s.max, s.av, s.lease, s.act, s.lseq,
    s.fm, s.ws, s.wn, s.hl)
end

-- The hash fields flush writes for a changed specialist.
local function spec_fields(s, command)
  local dirty = s.dirty
  if dirty.caps then
    command[#command + 1] = 'caps'
    command[#command + 1] = s.caps
  end
  if dirty.r then
    command[#command + 1] = 'r'
    command[#command + 1] = pack_r(s)
  end
  if dirty.p then
    command[#command + 1] = 'p'
    command[#command + 1] = sformat('%d\t%d\t%s\t%s\t%s', s.pn, s.pok, s.pq, s.pt, s.w)
  end
  if dirty.d then
    command[#command + 1] = 'd'
    command[#command + 1] = s.reg .. '\t' .. s.hb .. '\t' .. s.lab
  end
  if dirty.inc then
    command[#command + 1] = 'inc'
    command[#command + 1] = s.inc
  end
end

-- Its capabilities as a list, parsed once per call.
local function spec_caps(s)
  if not s.list then s.list = split(s.caps) end
  return s.list
end

-- Whether it has a capability (one plain find in its space-padded list).
local function spec_has(s, needle)
  local padded = s.padded
  if not padded then
    padded = ' ' .. s.caps .. ' '
    s.padded = padded
  end
  return sfind(padded, needle, 1, true) ~= nil
end

local function can_take_work(s)
  return s.av ~= 'offline' and s.lease > NOW
end

local function free_slots(s)
  if not can_take_work(s) then return 0 end
  return mmax(s.max - s.act, 0)
end

local function spec_performance(s)
  return rule_performance(s.ws, s.wn)
end

-- Zero-padded, so members of equal bound sort in the tie-break order (fewer held, assigned
-- longest ago, smaller id).
local function free_member(act, lseq, id)
  return sformat('%010d:%020d:', act, lseq) .. id
end

-- Files the specialist in the free index as its record stands now.
local function refile(s)
  local member = ''
  if s.av ~= 'offline' and s.act < s.max then
    member = free_member(s.act, s.lseq, s.id)
  end
  local old = s.fm
  if old ~= '' and old ~= member then rcall('ZREM', P .. K.free, old) end
  if member ~= '' then
    local bound = score_of(1.0, load_factor(s.act), AVAILABILITY[s.av], spec_performance(s),
      POL.weights)
    rcall('ZADD', P .. K.free, -bound, member)
  end
  if old ~= member then spec_set(s, 'fm', member) end
end

-- Whether any registered specialist of this type (whatever its availability) could serve a
-- subtask needing `required` (a list); answers are kept for the call.
local function any_capable(required, require_all)
  local question = tconcat(required, ' ')
  if require_all then question = question .. '|all' end
  if not CAPABLE then CAPABLE = {} end
  local answer = CAPABLE[question]
  if answer ~= nil then return answer end
  if #required == 0 then
    answer = rcall('ZCARD', P .. K.specs) > 0
  elseif not require_all then
    local keys = {}
    for i = 1, #required do keys[i] = P .. K.cap .. required[i] end
    answer = rcall('EXISTS', unpack_(keys)) > 0
  else
    local command = {'SINTERCARD', #required}
    for i = 1, #required do command[i + 2] = P .. K.cap .. required[i] end
    command[#command + 1] = 'LIMIT'
    command[#command + 1] = 1
    answer = rcall(unpack_(command)) > 0
  end
  CAPABLE[question] = answer
  return answer
end

-- Register and deregister change who could serve what.
local function capabilities_changed()
  CAPABLE = nil
end

-- A window's successes (its 1s).
local function window_successes(window)
  local _, successes = sgsub(window, '1', '')
  return successes
end

-- A specialist as replies carry it: {id, type, caps, r, d} (the parts as stored; r and d are
-- packed as the header above says).
local function specialist_reply(s)
  spec_display(s)
  return {s.id, TYPE, s.caps, pack_r(s), s.reg .. '\t' .. s.hb .. '\t' .. s.lab}
end

-- The refusal when a call names an incarnation other than the specialist's current one (none
-- given, an unknown specialist or one without an incarnation: nothing to check).
local function incarnation_refused(s, given)
  if given == nil or given == '' or not s then return nil end
  if s.inc ~= '' and s.inc ~= given then return refuse(E.INCARNATION_ENDED, given) end
  return nil
end
