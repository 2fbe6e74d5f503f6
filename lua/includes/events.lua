--[[
  events: what a call tells others. Watch events go to the deployment's pub/sub channel, one
  message each: lines `to`, `kind`, the subtask id, the routed type, the queue position ('' unless
  QUEUED) and the length of v, then v (the assignment state as stored, subtasks.lua) and the
  subtask as submitted (opaque); a replica reads the first line and skips events for streams it
  does not hold without reading anything else. A deregistration sends `to` and END; a new
  incarnation `to`, INC and the incarnation.
  Outbox entries (with Postgres configured) go to the slot's `outbox` stream as flat fields
  (`k` names the kind; src/store/redis/outbox.rs decodes them): one per subtask the call
  changed, with the state it ended in (and the completion report that finished it, if one did),
  written by flush.
]]

local function publish(to, kind, r, revoked)
  local v = pack_v(r, revoked)
  local position = ''
  if r.st == 'QUEUED' then position = queue_rank(r.id) end
  rcall('PUBLISH', POL.channel, to .. '\n' .. kind .. '\n' .. r.id .. '\n' .. TYPE .. '\n'
    .. position .. '\n' .. #v .. '\n' .. v .. sub_spec(r))
end

local function publish_end(to)
  rcall('PUBLISH', POL.channel, to .. '\nEND')
end

-- A new incarnation of `to` started: watch streams of any other one end.
local function publish_incarnation(to, incarnation)
  rcall('PUBLISH', POL.channel, to .. '\nINC\n' .. incarnation)
end

-- The subtask changed in this call: one outbox entry with the state it ends the call in.
local function touch(r)
  if not r.touched then
    r.touched = true
    TOUCHED[#TOUCHED + 1] = r
  end
end

local function outbox(...)
  if POL.outbox then rcall('XADD', P .. K.outbox, '*', ...) end
end

-- An entry for a state the subtask passes through within this call (a holding that ended before
-- the same call hands it on), so the history shows every holding's end; `flush` writes the final
-- state only if it differs.
local function outbox_passing(r)
  if not POL.outbox then return end
  local packed = pack_v(r)
  rcall('XADD', P .. K.outbox, '*', 'k', 's', 'id', r.id, 'v', packed)
  r.passed = packed
end

-- Ends a call: every changed record written once, then the outbox entries of the subtasks it
-- changed. Returns `reply` ({0, ...}), its code -1 when dependents in other slots were left
-- notices to deliver (lifecycle.lua).
local function flush(reply)
  for i = 1, #SPEC_WRITES do
    local s = SPEC_WRITES[i]
    if SPECS[s.id] == s then
      local command = {'HSET', P .. K.specialist .. s.id}
      spec_fields(s, command)
      rcall(unpack_(command))
    end
  end
  for i = 1, #SUB_WRITES do
    local r = SUB_WRITES[i]
    if SUBS[r.id] == r then
      if r.new then
        rcall('HSET', P .. K.subtask .. r.id, 'spec', r.spec, 'k', r.caps .. '\t' .. r.all .. '\t'
          .. r.prio .. '\t' .. r.lf .. '\t' .. r.from .. '\t' .. r.vd, 'v', pack_v(r))
      else
        rcall('HSET', P .. K.subtask .. r.id, 'v', pack_v(r))
      end
    end
  end
  if POL.outbox then
    for i = 1, #TOUCHED do
      local r = TOUCHED[i]
      if SUBS[r.id] == r then
        if REPORT and REPORT.id == r.id then
          -- The change and the report that made it, in one entry.
          rcall('XADD', P .. K.outbox, '*', 'k', 'f', 'id', r.id, 'v', pack_v(r), 'ok', REPORT.ok,
            'ms', REPORT.ms, 'q', REPORT.q)
        elseif r.new then
          rcall('XADD', P .. K.outbox, '*', 'k', 'c', 'id', r.id, 'v', pack_v(r), 'spec', r.spec)
        else
          local packed = pack_v(r)
          if packed ~= r.passed then
            rcall('XADD', P .. K.outbox, '*', 'k', 's', 'id', r.id, 'v', packed)
          end
        end
      end
    end
  end
  if NOTIFIED then reply[1] = -1 end
  return reply
end
