--[[
  subtasks: the record `t:<id>` (hash) and the view replies carry.

  Record fields: spec (the subtask as submitted, opaque bytes only Rust reads: the payload is in
  it), caps (required capabilities, space-joined), all ('1': require all), prio, cr (created ms),
  st (state), att (attempt), hold (holder id, '' none; kept after a report finished it), ep
  (epoch), at (assigned ms), bd (the score breakdown's inputs, see pick.lua), qs (queue score,
  '' when not queued), enq (enqueued ms), wait (ids it is blocked on), rw (dependencies in other
  slots it waits on: id type pairs), excl (specialists that released it), det (detail), fin
  (finished ms, '' unfinished), lf (learned factors, '' none), hd ('1': dependents wait on it),
  from (the type that forwarded it here, '' none), vd (the type whose stale claim on the id was
  voided, '' none): the retention removes the marks those two types keep.
]]

local function sub_get(id)
  local cached = SUBS[id]
  if cached ~= nil then return cached or nil end
  local v = rcall('HMGET', P .. 't:' .. id, 'st', 'att', 'hold', 'ep', 'at', 'bd', 'qs', 'enq',
    'wait', 'rw', 'excl', 'det', 'fin', 'caps', 'all', 'prio', 'lf', 'cr', 'hd', 'from', 'vd')
  if not v[1] then
    SUBS[id] = false
    return nil
  end
  local r = {
    id = id, st = v[1], att = tonumber(v[2]), hold = v[3], ep = tonumber(v[4]), at = v[5],
    bd = v[6], qs = v[7], enq = v[8], wait = v[9], rw = v[10], excl = v[11], det = v[12],
    fin = v[13], caps = v[14], all = v[15], prio = tonumber(v[16]), lf = v[17], cr = v[18],
    hd = v[19], from = v[20], vd = v[21]
  }
  SUBS[id] = r
  return r
end

local SUB_FIELDS = {'spec', 'caps', 'all', 'prio', 'cr', 'st', 'att', 'hold', 'ep', 'at', 'bd',
  'qs', 'enq', 'wait', 'rw', 'excl', 'det', 'fin', 'lf', 'hd', 'from', 'vd'}

-- A record made in this call: every field is written by flush.
local function sub_new(r)
  SUBS[r.id] = r
  local dirty = {}
  for i = 1, #SUB_FIELDS do dirty[SUB_FIELDS[i]] = true end
  SUB_DIRTY[r.id] = dirty
  SUB_ORDER[#SUB_ORDER + 1] = r.id
end

local function sub_set(r, field, value)
  r[field] = value
  local dirty = SUB_DIRTY[r.id]
  if not dirty then
    dirty = {}
    SUB_DIRTY[r.id] = dirty
    SUB_ORDER[#SUB_ORDER + 1] = r.id
  end
  dirty[field] = true
end

-- The record is deleted: nothing of it is written.
local function sub_drop(id)
  SUBS[id] = false
  SUB_DIRTY[id] = nil
end

-- Its required capabilities as a list, parsed once per call.
local function sub_required(r)
  if not r.required then r.required = split(r.caps) end
  return r.required
end

-- The subtask as submitted (opaque): read only when a reply or an event carries it.
local function sub_spec(r)
  if r.spec == nil then r.spec = rcall('HGET', P .. 't:' .. r.id, 'spec') or '' end
  return r.spec
end

local function queue_rank(subtask_id)
  local rank = rcall('ZRANK', P .. 'queue', subtask_id)
  if not rank then return '' end
  return rank + 1
end

-- The assignment view as replies and events carry it: {id, routed type, state, attempt, holder,
-- epoch, assigned at, breakdown inputs, queue position ('' unless QUEUED), waiting on, detail,
-- created, finished}. `revoked`: {holder, epoch, at, bd} shown instead of the record's holder.
local function view(r, revoked)
  local holder, epoch, at, bd = r.hold, r.ep, r.at, r.bd
  if revoked then holder, epoch, at, bd = revoked[1], revoked[2], revoked[3], revoked[4] end
  local position = ''
  if r.st == 'QUEUED' then position = queue_rank(r.id) end
  return {r.id, TYPE, r.st, r.att, holder, epoch, at, bd, position, r.wait, r.det, r.cr, r.fin}
end
