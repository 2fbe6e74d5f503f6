--[[
  events: what a call tells others. Watch events go to the deployment's pub/sub channel, one
  message each, as flat text: lines `to`, `kind`, then the view's id, routed type, state,
  attempt, holder, epoch, assigned at, breakdown inputs, queue position, waiting on, created,
  finished and the detail's length, then the detail and the subtask as submitted (opaque), so a
  replica reads the first line and skips events for streams it does not hold without decoding
  anything else. A deregistration sends `to` and END.
  Outbox entries (with Postgres configured) go to the slot's `outbox` stream as flat fields
  (`k` names the kind; see src/store/redis/outbox.rs): one per subtask the call changed, with the
  state it ended in (and the completion report that finished it, if one did), written by flush.
]]

local function publish(to, kind, r, revoked)
  local v = view(r, revoked)
  local detail = v[11]
  local head = table.concat({to, kind, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
    v[10], v[12], v[13], #detail}, '\n')
  rcall('PUBLISH', POL.channel, head .. '\n' .. detail .. sub_spec(r))
end

local function publish_end(to)
  rcall('PUBLISH', POL.channel, to .. '\nEND')
end

-- The subtask changed in this call: one outbox entry with the state it ends the call in.
local function touch(r)
  if not TOUCHED[r.id] then
    TOUCHED[r.id] = true
    TOUCHED_ORDER[#TOUCHED_ORDER + 1] = r.id
  end
end

local function outbox(...)
  if POL.outbox then rcall('XADD', P .. 'outbox', '*', ...) end
end

local function write_dirty(order, dirty_of, records, prefix)
  for i = 1, #order do
    local id = order[i]
    local dirty = dirty_of[id]
    local record = records[id]
    if dirty and record then
      local command = {'HSET', prefix .. id}
      for field, _ in pairs(dirty) do
        command[#command + 1] = field
        command[#command + 1] = record[field]
      end
      rcall(unpack(command))
      dirty_of[id] = nil
    end
  end
end

-- Ends a call: every changed record written once, then the outbox entries of the subtasks it
-- changed. Returns `reply` ({0, ...}), its code -1 when dependents in other slots were left
-- notices to deliver (dependencies.lua).
local function flush(reply)
  write_dirty(SPEC_ORDER, SPEC_DIRTY, SPECS, P .. 's:')
  write_dirty(SUB_ORDER, SUB_DIRTY, SUBS, P .. 't:')
  if POL.outbox then
    for i = 1, #TOUCHED_ORDER do
      local r = SUBS[TOUCHED_ORDER[i]]
      if r then
        if REPORT and REPORT.id == r.id then
          -- The change and the report that made it, in one entry.
          rcall('XADD', P .. 'outbox', '*', 'k', 'f', 'id', r.id, 'st', r.st, 'att', r.att,
            'hold', r.hold, 'ep', r.ep, 'bd', r.bd, 'det', r.det, 'ok', REPORT.ok,
            'ms', REPORT.ms, 'q', REPORT.q)
        elseif CREATED[r.id] then
          rcall('XADD', P .. 'outbox', '*', 'k', 'c', 'id', r.id, 'st', r.st, 'att', r.att,
            'hold', r.hold, 'ep', r.ep, 'bd', r.bd, 'det', r.det, 'cr', r.cr, 'spec', sub_spec(r))
        else
          rcall('XADD', P .. 'outbox', '*', 'k', 's', 'id', r.id, 'st', r.st, 'att', r.att,
            'hold', r.hold, 'ep', r.ep, 'bd', r.bd, 'det', r.det)
        end
      end
    end
  end
  if NOTIFIED then reply[1] = -1 end
  return reply
end
