--[[
  assign: accept a subtask and, in the same step, give it to the best eligible specialist (pick,
  load increment, assignment record, event) or queue it FIFO within its priority; BLOCKED while
  dependencies are unfinished, FAILED when one failed. The same id with the same content returns
  the current assignment.
  ARGV[3] json  {subtask_id, specialist_type, required_capabilities[], priority,
                 require_all_capabilities, depends_on[], spec (canonical json of the whole spec),
                 learned (json text {weights, performance: {specialist id: factor}}, or "")}
                 Learned factors stay with the subtask: every pick for it uses them.
  Returns {view}. Errors: 4 same id, other content; 3 unknown dependency; 5 history backlog full.
  Events: subtask_created and subtask_changed (outbox), ASSIGNED (watch).
]]
local subtask_id = ARGS.subtask_id
local existing = sub_get(subtask_id)
if existing then
  if existing.spec == ARGS.spec then
    return done({view = view_of(existing)})
  end
  return fail(4, 'subtask ' .. subtask_id .. ' exists with different content')
end
if POLICY.outbox and rcall('XLEN', key('outbox')) >= POLICY.outbox_bound then
  return fail(5, 'history backlog full (' .. POLICY.outbox_bound
    .. ' events not yet written to Postgres); retry later')
end
local waiting_on = {}
local failed_dependency = nil
for _, dependency_id in ipairs(ARGS.depends_on) do
  local state = rcall('HGET', key('sub', dependency_id), 'state')
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
local routed_type = routed_type_for(ARGS.specialist_type, required, require_all)
local all_flag = '0'
if require_all then all_flag = '1' end
sub_write('HSET', subtask_id, 'spec', ARGS.spec, 'created', NOW, 'state', 'BLOCKED',
  'attempt', 1, 'rtype', routed_type, 'holder', '', 'epoch', 0, 'qs', '', 'enq', NOW,
  'waiting', '[]', 'excl', '[]', 'detail', '', 'fin', '', 'caps', encode_list(required),
  'all', all_flag, 'prio', ARGS.priority, 'lf', ARGS.learned or '')
touch(subtask_id)
if failed_dependency then
  finish(subtask_id, 'FAILED', 'dependency ' .. failed_dependency[1] .. ' is '
    .. failed_dependency[2])
elseif #waiting_on > 0 then
  block(subtask_id, waiting_on)
else
  route_ready(subtask_id)
end
local record = sub_get(subtask_id)
outbox({kind = 'subtask_created', spec = ARGS.spec, created_at_ms = NOW, routed_type = routed_type,
  state = record.state})
return done({view = view_of(record)})
