--[[
  specialists: the record `s:<id>` (hash), the free index `free` (who has room, best possible
  score first) and the capability index `cap:<capability>` (sets).

  Record fields: caps (its capabilities, sorted, space-joined), max (max_concurrency), av
  (availability), lease (expiry ms), act (subtasks held), lseq (epoch of its latest hand-out,
  0 never), fm (its free-index member, '' when it has no room), its performance record while it
  is registered: pn and pok (reports, successes), pq and pt (quality and time sums, %.17g), w
  (the last WINDOW outcomes as 1/0), ws and wn (successes and outcomes in w); and, for display
  only, lab (labels, opaque text), reg and hb (registered and last-heartbeat ms).
  `perf:<id>` (hash n, ok, q, t, w) keeps the performance record while the id is not registered
  (written when it deregisters, read when it registers), so it outlives a registration.
]]

-- also: 'perf' reads the performance record too (a report, which updates it, in one read);
-- 'display' the display fields (a call whose reply shows the specialist).
local function spec_get(id, also)
  local cached = SPECS[id]
  if cached ~= nil then return cached or nil end
  local values
  if also == 'perf' then
    values = rcall('HMGET', P .. 's:' .. id, 'caps', 'max', 'av', 'lease', 'act', 'lseq', 'fm',
      'ws', 'wn', 'pn', 'pok', 'pq', 'pt', 'w')
  elseif also == 'display' then
    values = rcall('HMGET', P .. 's:' .. id, 'caps', 'max', 'av', 'lease', 'act', 'lseq', 'fm',
      'ws', 'wn', 'lab', 'reg', 'hb')
  else
    values = rcall('HMGET', P .. 's:' .. id, 'caps', 'max', 'av', 'lease', 'act', 'lseq', 'fm',
      'ws', 'wn')
  end
  if not values[2] then
    SPECS[id] = false
    return nil
  end
  local s = {
    id = id, caps = values[1], max = tonumber(values[2]), av = values[3],
    lease = tonumber(values[4]), act = tonumber(values[5]), lseq = tonumber(values[6]),
    fm = values[7], ws = tonumber(values[8]), wn = tonumber(values[9])
  }
  if also == 'perf' then
    s.pn, s.pok, s.pq, s.pt, s.w = tonumber(values[10] or '0'), tonumber(values[11] or '0'),
      values[12] or '0', values[13] or '0', values[14] or ''
  elseif also == 'display' then
    s.lab, s.reg, s.hb = values[10] or '', values[11] or 0, values[12] or 0
  end
  SPECS[id] = s
  return s
end

-- The performance record of a specialist read without it (read once per call).
local function spec_perf(s)
  if s.pn == nil then
    local values = rcall('HMGET', P .. 's:' .. s.id, 'pn', 'pok', 'pq', 'pt', 'w')
    s.pn, s.pok, s.pq, s.pt, s.w = tonumber(values[1] or '0'), tonumber(values[2] or '0'),
      values[3] or '0', values[4] or '0', values[5] or ''
  end
end

local SPEC_FIELDS = {'caps', 'max', 'av', 'lease', 'act', 'lseq', 'fm', 'ws', 'wn', 'lab', 'reg',
  'hb', 'pn', 'pok', 'pq', 'pt', 'w'}

-- A record made in this call: every field is written by flush.
local function spec_new(s)
  SPECS[s.id] = s
  local dirty = {}
  for i = 1, #SPEC_FIELDS do dirty[SPEC_FIELDS[i]] = true end
  SPEC_DIRTY[s.id] = dirty
  SPEC_ORDER[#SPEC_ORDER + 1] = s.id
end

local function spec_set(s, field, value)
  s[field] = value
  local dirty = SPEC_DIRTY[s.id]
  if not dirty then
    dirty = {}
    SPEC_DIRTY[s.id] = dirty
    SPEC_ORDER[#SPEC_ORDER + 1] = s.id
  end
  dirty[field] = true
  if field == 'caps' then
    s.cap_list = nil
    s.cap_set = nil
  end
end

-- The record is deleted: nothing of it is written.
local function spec_drop(id)
  SPECS[id] = false
  SPEC_DIRTY[id] = nil
end

-- Its capabilities as a list and a set, parsed once per call.
local function spec_caps(s)
  if not s.cap_list then
    s.cap_list = split(s.caps)
    s.cap_set = set_of(s.cap_list)
  end
  return s.cap_list, s.cap_set
end

local function can_take_work(s)
  return s.av ~= 'offline' and s.lease > NOW
end

local function free_slots(s)
  if not can_take_work(s) then return 0 end
  return math.max(s.max - s.act, 0)
end

local function spec_performance(s)
  return rule_performance(s.ws, s.wn)
end

-- Zero-padded, so members of equal bound sort in the tie-break order (fewer held, assigned
-- longest ago, smaller id).
local function free_member(act, lseq, id)
  return string.format('%010d:%020d:', act, lseq) .. id
end

-- Files the specialist in the free index as its record stands now.
local function refile(s)
  local member = ''
  if s.av ~= 'offline' and s.act < s.max then
    member = free_member(s.act, s.lseq, s.id)
  end
  local old = s.fm or ''
  if old ~= '' and old ~= member then rcall('ZREM', P .. 'free', old) end
  if member ~= '' then
    local bound = score_of(1.0, load_factor(s.act), AVAILABILITY[s.av], spec_performance(s),
      POL.weights)
    rcall('ZADD', P .. 'free', -bound, member)
  end
  if old ~= member then spec_set(s, 'fm', member) end
end

-- Whether any registered specialist of this type (whatever its availability) could serve a
-- subtask needing `required` (a list); answers are kept for the call.
local function any_capable(required, require_all)
  local question = table.concat(required, ' ')
  if require_all then question = question .. '|all' end
  local answer = CAPABLE[question]
  if answer ~= nil then return answer end
  if #required == 0 then
    answer = rcall('ZCARD', P .. 'specs') > 0
  elseif not require_all then
    local keys = {}
    for i = 1, #required do keys[i] = P .. 'cap:' .. required[i] end
    answer = rcall('EXISTS', unpack(keys)) > 0
  else
    local command = {'SINTERCARD', #required}
    for i = 1, #required do command[i + 2] = P .. 'cap:' .. required[i] end
    command[#command + 1] = 'LIMIT'
    command[#command + 1] = 1
    answer = rcall(unpack(command)) > 0
  end
  CAPABLE[question] = answer
  return answer
end

-- Register and deregister change who could serve what.
local function capabilities_changed()
  CAPABLE = {}
end

-- A window's successes (its 1s).
local function window_successes(window)
  local _, successes = string.gsub(window, '1', '')
  return successes
end

-- The display fields, read only when a reply shows them (fields set in this call win).
local function spec_display(s)
  if s.lab == nil or s.reg == nil or s.hb == nil then
    local extra = rcall('HMGET', P .. 's:' .. s.id, 'lab', 'reg', 'hb')
    if s.lab == nil then s.lab = extra[1] or '' end
    if s.reg == nil then s.reg = extra[2] or 0 end
    if s.hb == nil then s.hb = extra[3] or 0 end
  end
end

-- A specialist as replies carry it:
-- {id, type, caps, max, labels, availability, active, registered, heartbeat, lease, ws, wn}.
local function specialist_reply(s)
  spec_display(s)
  return {s.id, TYPE, s.caps, s.max, s.lab, s.av, s.act, s.reg, s.hb, s.lease, s.ws, s.wn}
end
