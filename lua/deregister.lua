--[[
  deregister: remove a specialist; what it held goes back to the head of its queue with the same
  attempt (leaving is not a failed try) and to whoever can take it now. Its performance is kept.
  ARGV[3] json  {specialist_id}
  Returns {held: [subtask ids, oldest first]}. Errors: 1 unknown specialist.
  Events: REVOKED (watch) per held subtask, then END (its watch streams close);
  specialist_deregistered and subtask_changed (outbox).
]]
local specialist_id = ARGS.specialist_id
local spec = spec_get(specialist_id)
if not spec then
  return fail(1, 'specialist ' .. specialist_id .. ' not found')
end
rcall('ZREM', key('specs'), specialist_id)
for _, capability in ipairs(spec.caps) do
  rcall('SREM', key('cap', capability), specialist_id)
end
capabilities_changed()
if spec.fm and spec.fm ~= '' then
  rcall('ZREM', key('free'), spec.fm)
end
rcall('ZREM', key('leases'), specialist_id)
local held = held_oldest_last(specialist_id)
rcall('DEL', key('spec', specialist_id), key('held', specialist_id))
spec_forget(specialist_id)
for _, subtask_id in ipairs(held) do
  local revoked = holder_of(sub_get(subtask_id))
  requeue_or_fail(subtask_id, false, 'specialist ' .. specialist_id .. ' deregistered')
  publish_revoked(revoked, subtask_id)
end
rcall('PUBLISH', POLICY.channel, cjson.encode({to = specialist_id, kind = 'END'}))
place_all(held)
outbox({kind = 'specialist_deregistered', specialist_id = specialist_id})
local oldest_first = {}
for i = #held, 1, -1 do table.insert(oldest_first, held[i]) end
return done({held = oldest_first})
