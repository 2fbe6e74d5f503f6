--[[
  subtasks: the record `t:<id>` (hash) and the view replies carry.

  Record fields:
    spec  the subtask as submitted: opaque bytes only Rust reads (the payload is in it)
    k     what the rules read of the spec, tab-joined: caps (required capabilities,
          space-joined), all ('1': require all), prio, lf (learned factors, '' none), from (the
          type that forwarded it here, '' none), vd (the type whose stale claim on the id was
          voided, '' none; the retention removes the marks those two types keep)
    v     its assignment state, tab-joined (the view replies and events carry as it is): st
          (state), att (attempt), hold (holder id, '' none; kept after a report finished it),
          ep (epoch), at (assigned ms), bd (the breakdown's inputs, pick.lua), qs (queue score,
          '' unless queued), enq (enqueued ms), wait (ids it is blocked on), rw (dependencies
          in other slots it waits on: id type pairs), excl (specialists that released it), cr
          (created ms), fin (finished ms, '' unfinished), hd ('1': dependents wait on it), det
          (detail: last, the one field that may hold any text)
]]

local V_PATTERN = '^' .. '([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t'
  .. '([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$'
local K_PATTERN = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$'

local function sub_record(id, v)
  local st, att, hold, ep, at, bd, qs, enq, wait, rw, excl, cr, fin, hd, det =
    smatch(v, V_PATTERN)
  return {
    id = id, st = st, att = att, hold = hold, ep = ep, at = at, bd = bd,
    qs = qs, enq = enq, wait = wait, rw = rw, excl = excl, cr = cr, fin = fin, hd = hd, det = det,
    caps = false, all = false, prio = false, lf = false, from = false, vd = false, spec = false,
    required = false, needles = false, learned = false, excluded = false, written = false,
    new = false, touched = false, packed = false
  }
end

local function sub_load_static(r, k)
  r.caps, r.all, r.prio, r.lf, r.from, r.vd = smatch(k, K_PATTERN)
  r.prio = tonum(r.prio)
end

-- What the rules read of the spec (k), read once per call.
local function sub_static(r)
  if not r.caps then sub_load_static(r, rcall('HGET', P .. K.subtask .. r.id, 'k')) end
end

-- with_static: read what the rules read of the spec too (k).
local function sub_get(id, with_static)
  local cached = SUBS[id]
  if cached ~= nil then
    if cached and with_static and not cached.caps then sub_static(cached) end
    return cached or nil
  end
  local r
  if with_static then
    local values = rcall('HMGET', P .. K.subtask .. id, 'v', 'k')
    if not values[1] then
      SUBS[id] = false
      return nil
    end
    r = sub_record(id, values[1])
    sub_load_static(r, values[2])
  else
    local v = rcall('HGET', P .. K.subtask .. id, 'v')
    if not v then
      SUBS[id] = false
      return nil
    end
    r = sub_record(id, v)
  end
  SUBS[id] = r
  return r
end

-- A record made in this call: flush writes spec, k and v.
local function sub_new(r)
  SUBS[r.id] = r
  r.new = true
  r.written = true
  SUB_WRITES[#SUB_WRITES + 1] = r
end

local function sub_set(r, field, value)
  r[field] = value
  r.packed = false
  if not r.written then
    r.written = true
    SUB_WRITES[#SUB_WRITES + 1] = r
  end
end

-- The record is deleted: nothing of it is written.
local function sub_drop(id)
  SUBS[id] = false
end

-- Its required capabilities as a list, parsed once per call.
local function sub_required(r)
  if not r.required then
    sub_static(r)
    r.required = split(r.caps)
  end
  return r.required
end

-- Its required capabilities as " <cap> " needles for spec_has.
local function sub_needles(r)
  if not r.needles then
    local required = sub_required(r)
    local needles = {}
    for i = 1, #required do needles[i] = ' ' .. required[i] .. ' ' end
    r.needles = needles
  end
  return r.needles
end

-- The subtask as submitted (opaque): read only when a reply or an event carries it.
local function sub_spec(r)
  if not r.spec then r.spec = rcall('HGET', P .. K.subtask .. r.id, 'spec') or '' end
  return r.spec
end

-- The assignment state as stored (v); `revoked` ({holder, epoch, at, bd}) shows a revoked
-- holder instead of the record's.
local function pack_v(r, revoked)
  if not revoked and r.packed then return r.packed end
  local hold, ep, at, bd = r.hold, r.ep, r.at, r.bd
  if revoked then hold, ep, at, bd = revoked[1], revoked[2], revoked[3], revoked[4] end
  local v = r.st .. '\t' .. r.att .. '\t' .. hold .. '\t' .. ep .. '\t' .. at
    .. '\t' .. bd .. '\t' .. r.qs .. '\t' .. r.enq .. '\t' .. r.wait .. '\t' .. r.rw .. '\t'
    .. r.excl .. '\t' .. r.cr .. '\t' .. r.fin .. '\t' .. r.hd .. '\t' .. r.det
  if not revoked then r.packed = v end
  return v
end

local function queue_rank(subtask_id)
  local rank = rcall('ZRANK', P .. K.queue, subtask_id)
  if not rank then return '' end
  return rank + 1
end

-- The view as replies carry it: {id, routed type, v, queue position ('' unless QUEUED)}.
local function view(r)
  local position = ''
  if r.st == 'QUEUED' then position = queue_rank(r.id) end
  return {r.id, TYPE, pack_v(r), position}
end
