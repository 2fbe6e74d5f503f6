--[[
  lifecycle: how subtasks end, go back to their queue, and wait on each other.

  A finished subtask (COMPLETED, FAILED, CANCELLED) enters `done` (zset by finish time); the
  lease sweep lists those finished longer than the retention ago, the store removes their
  directory entries, and `purge` deletes their records (retention.lua).
  Dependencies: a BLOCKED subtask is listed in `deps:<dependency>` (ids in this slot,
  "\0<type>\0<id>" for a dependent in another slot) and in `blocked`; the dependency's record gets
  hd = '1'. When it finishes, its dependents in this slot settle in the same call and those in
  other slots are appended to `notify` as "<type> <dependent> <dependency> <state>", which the
  store delivers (settle in the dependent's slot) right after the call.
]]

-- Marks a subtask finished without settling its dependents (the caller does).
local function mark_finished(r, state, detail)
  sub_set(r, 'st', state)
  sub_set(r, 'fin', NOW_TEXT)
  if detail then sub_set(r, 'det', detail) end
  rcall('ZADD', P .. K.done, NOW, r.id)
  touch(r)
end

local function unblock(r)
  sub_set(r, 'wait', '')
  rcall('SREM', P .. K.blocked, r.id)
end

-- One dependent learns that a dependency finished in `state`. Nothing happens unless it is
-- BLOCKED on that dependency (a repeated notice does nothing). A dependent it fails is appended
-- to `pending`, whose own dependents settle next.
local function settle_one(dependent_id, dependency_id, state, pending)
  local d = sub_get(dependent_id)
  if not d or d.st ~= 'BLOCKED' then return end
  local still = {}
  local waited = false
  local waiting = split(d.wait)
  for i = 1, #waiting do
    if waiting[i] == dependency_id then waited = true else still[#still + 1] = waiting[i] end
  end
  if not waited then return end
  if state == 'COMPLETED' then
    sub_set(d, 'wait', tconcat(still, ' '))
    touch(d)
    if #still == 0 then
      unblock(d)
      route_ready(d)
    end
  else
    unblock(d)
    mark_finished(d, 'FAILED', 'dependency ' .. dependency_id .. ' is ' .. state)
    pending[#pending + 1] = d
  end
end

-- Settles the dependents of finished subtasks (and, transitively, of those that fail with them).
local function settle_from(pending)
  while #pending > 0 do
    local dependency = tremove(pending)
    if dependency.hd == '1' then
      local list = P .. K.deps .. dependency.id
      local waiting = rcall('LRANGE', list, 0, -1)
      rcall('DEL', list)
      for i = 1, #waiting do
        local entry = waiting[i]
        local target_type, target_id = smatch(entry, '^%z([^%z]*)%z(.*)$')
        if target_type then
          rcall('RPUSH', P .. K.notify, target_type .. ' ' .. target_id .. ' ' .. dependency.id
            .. ' ' .. dependency.st)
          NOTIFIED = true
        else
          settle_one(entry, dependency.id, dependency.st, pending)
        end
      end
    end
  end
end

local function finish(r, state, detail)
  mark_finished(r, state, detail)
  settle_from({r})
end

-- remote: dependency id -> its type, for dependencies in other slots (the store registers this
-- subtask with them after the call: depend there).
local function block(r, waiting, remote)
  sub_set(r, 'st', 'BLOCKED')
  sub_set(r, 'wait', tconcat(waiting, ' '))
  local remote_waits = {}
  for i = 1, #waiting do
    local dependency_id = waiting[i]
    local remote_type = remote[dependency_id]
    if remote_type then
      remote_waits[#remote_waits + 1] = dependency_id
      remote_waits[#remote_waits + 1] = remote_type
    else
      rcall('RPUSH', P .. K.deps .. dependency_id, r.id)
      local dependency = sub_get(dependency_id)
      if dependency and dependency.hd ~= '1' then sub_set(dependency, 'hd', '1') end
    end
  end
  sub_set(r, 'rw', tconcat(remote_waits, ' '))
  rcall('SADD', P .. K.blocked, r.id)
end

-- The dependencies in other slots a BLOCKED subtask still waits on, as id, type, id, type...
local function remote_waits(r)
  if r.st ~= 'BLOCKED' or r.rw == nil or r.rw == '' then return {} end
  local waiting = set_of(split(r.wait))
  local pairs_list = split(r.rw)
  local result = {}
  for i = 1, #pairs_list, 2 do
    if waiting[pairs_list[i]] then
      result[#result + 1] = pairs_list[i]
      result[#result + 1] = pairs_list[i + 1]
    end
  end
  return result
end

-- Frees the holder's slot for a subtask (the caller refiles it).
local function free_holder_slot(s, r)
  if not s then return end
  local held, was = list_remove(s.hl, r.id)
  if was then
    spec_set(s, 'hl', held)
    spec_set(s, 'act', s.act - 1)
  end
end

-- Takes a subtask from its holder: false when that spent its last attempt (it is FAILED).
local function take_back(r, spent, detail)
  sub_set(r, 'hold', '')
  sub_set(r, 'det', detail)
  touch(r)
  if spent then
    local max_attempts = POL.max_attempts
    if tonum(r.att) >= max_attempts then
      finish(r, 'FAILED', detail .. '; no attempts left (' .. max_attempts .. ' of '
        .. max_attempts .. ' spent)')
      return false
    end
    sub_set(r, 'att', sformat('%d', tonum(r.att) + 1))
  end
  return true
end

-- Puts a subtask whose holder is gone back at the head of its queue, or fails it when out of
-- attempts (spent: a release or a lapsed lease). Returns true when it was requeued.
local function requeue_or_fail(r, spent, detail)
  if not take_back(r, spent, detail) then return false end
  enqueue(r, true)
  -- The same call may hand it on (a drain, place_all): the history keeps the holding's end.
  outbox_passing(r)
  return true
end

-- A subtask whose holder handed it back goes to whoever can take it now, else to the head of
-- its queue (where it would be taken from at once: the same outcome without the queue's writes).
local function requeue_or_place(r, detail)
  if not take_back(r, true, detail) then return end
  local best = pick(r)
  if best then
    -- Between holders for a moment: the history records it queued, then the new holding.
    sub_set(r, 'st', 'QUEUED')
    outbox_passing(r)
    hand_out(r, best.s, best.matched, best.performance)
  else
    enqueue(r, true)
  end
end


-- The refusal when the caller is not the holder of an ASSIGNED subtask under its current epoch
-- (epochs are compared as decimal text, as both sides write them).
local function fenced(r, specialist_id, epoch)
  if not r then return refuse(E.SUBTASK_NOT_FOUND) end
  if r.st ~= 'ASSIGNED' or r.hold == '' then return refuse(E.NOT_ASSIGNED, r.st) end
  if r.hold ~= specialist_id then return refuse(E.WRONG_HOLDER) end
  if r.ep ~= epoch then return refuse(E.STALE_EPOCH, r.ep) end
  return nil
end

-- Held subtasks, newest epoch first, so inserting each at the queue head leaves the oldest first.
local function held_newest_first(s)
  local ids = split(s.hl)
  local records = {}
  for i = #ids, 1, -1 do
    local r = sub_get(ids[i])
    if r then records[#records + 1] = r end
  end
  return records
end

local function holder_of(r)
  if r.hold == nil or r.hold == '' then return nil end
  return {r.hold, r.ep, r.at, r.bd}
end
