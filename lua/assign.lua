--[[
  assign: accept a subtask and, in the same step, give it to the best eligible specialist (pick,
  load increment, assignment record, event) or queue it FIFO within its priority; BLOCKED while
  dependencies are unfinished, FAILED when one failed. The same id with the same content returns
  the current assignment.
  Runs in the slot of the requested type, or (routed) of the fallback type it was forwarded to.
  ARGV[3] json  {subtask_id, required_capabilities[], priority, require_all_capabilities,
                 depends_on: [{id, type|null, state|null}] (type: the slot the store's directory
                 names, null when unknown; state: read there, for dependencies in other slots),
                 spec (canonical json of the whole spec),
                 learned (json text {weights, performance: {specialist id: factor}}, or ""),
                 claimed (the directory names no other type for this id), takeover (the claim
                 was just moved here from a slot without the subtask: clear the void mark),
                 routed (forwarded here: no routing), fallback_capable (null until the
                 fallback type was asked)}
                 Learned factors stay with the subtask: every pick for it uses them.
  Returns {view, remote_waits?: list of (dependency id, type)} (the store registers it with
  those: depend.lua), or {ask_fallback: type} (nothing written; call again with
  fallback_capable from capable.lua there), or {forward: type} (this slot now forwards the id:
  call again there with routed; `mark:<id>` says so), or {unclaimed: true} (another type holds the claim: void.lua
  there), or {retry: true} (the claim moved away since the store read the directory).
  Errors: 4 same id, other content; 3 unknown dependency; 5 history backlog full.
  Writes: sub:<id>, mark:<id>, the queue and pick indexes, deps:<dependency>, blocked.
  Events: subtask_created and subtask_changed (outbox), ASSIGNED (watch).
]]
local subtask_id = ARGS.subtask_id
-- `mark:<id>`: 'fwd:<type>' (forwarded there) or 'void' (this type's claim was taken over).
local mark = rcall('GET', key('mark', subtask_id))
if mark == 'void' then
  if ARGS.takeover then
    rcall('DEL', key('mark', subtask_id))
  elseif ARGS.claimed then
    -- The id's claim moved to another type after the store read the directory.
    return done({retry = true})
  end
elseif mark then
  return done({forward = string.sub(mark, 5)})
end
local existing = sub_get(subtask_id)
if existing then
  if existing.spec == ARGS.spec then
    return done({view = view_of(existing), remote_waits = remote_waits(existing)})
  end
  return fail(4, 'subtask ' .. subtask_id .. ' exists with different content')
end
if not ARGS.claimed then
  -- The directory names another type for this id and nothing of it is here: the store asks that
  -- type's slot whether the subtask exists there (void.lua) before it takes the id over.
  return done({unclaimed = true})
end
if POLICY.outbox and rcall('XLEN', key('outbox')) >= POLICY.outbox_bound then
  return fail(5, 'history backlog full (' .. POLICY.outbox_bound
    .. ' events not yet written to Postgres); retry later')
end
local waiting_on = {}
local remote = {}
local failed_dependency = nil
for _, dependency in ipairs(ARGS.depends_on) do
  local dependency_id = dependency.id
  local state = nil
  if dependency.type == SLOT then
    state = rcall('HGET', key('sub', dependency_id), 'state')
  elseif dependency.type ~= nil and dependency.type ~= cjson.null
    and dependency.state ~= nil and dependency.state ~= cjson.null then
    state = dependency.state
    remote[dependency_id] = dependency.type
  end
  if not state then
    return fail(3, 'depends_on: subtask ' .. dependency_id .. ' is unknown')
  end
  if state == 'FAILED' or state == 'CANCELLED' then
    if not failed_dependency then failed_dependency = {dependency_id, state} end
  elseif state ~= 'COMPLETED' then
    table.insert(waiting_on, dependency_id)
  end
end
local required = ARGS.required_capabilities
local require_all = ARGS.require_all_capabilities
if not ARGS.routed then
  local route = route_new(required, require_all, ARGS.fallback_capable)
  if route == 'ask' then
    return done({ask_fallback = POLICY.fallback})
  elseif route == 'forward' then
    rcall('SET', key('mark', subtask_id), 'fwd:' .. POLICY.fallback)
    return done({forward = POLICY.fallback})
  end
end
local all_flag = '0'
if require_all then all_flag = '1' end
sub_write('HSET', subtask_id, 'spec', ARGS.spec, 'created', NOW, 'state', 'BLOCKED',
  'attempt', 1, 'rtype', SLOT, 'holder', '', 'epoch', 0, 'qs', '', 'enq', NOW,
  'waiting', '[]', 'excl', '[]', 'detail', '', 'fin', '', 'caps', encode_list(required),
  'all', all_flag, 'prio', ARGS.priority, 'lf', ARGS.learned or '')
touch(subtask_id)
if failed_dependency then
  finish(subtask_id, 'FAILED', 'dependency ' .. failed_dependency[1] .. ' is '
    .. failed_dependency[2])
elseif #waiting_on > 0 then
  block(subtask_id, waiting_on, remote)
else
  route_ready(subtask_id)
end
local record = sub_get(subtask_id)
outbox({kind = 'subtask_created', spec = ARGS.spec, created_at_ms = NOW, routed_type = SLOT,
  state = record.state})
return done({view = view_of(record), remote_waits = remote_waits(record)})
