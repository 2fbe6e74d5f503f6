--[[
  expire: the lease sweeper, one type (slot) per call. Specialists whose lease lapsed become OFFLINE; each subtask they held
  goes back to the head of its queue with attempt + 1 (FAILED past max attempts) and to whoever can
  take it now. Any replica may run it any time; running it twice does nothing more.
  ARGV[3] json  {limit}: at most this many lapsed specialists per call (call again while `more`)
  Returns {expired[], requeued, failed, more, notify?}.
  Events: REVOKED/ASSIGNED (watch), specialist_availability and subtask_changed (outbox).
]]
local lapsed = rcall('ZRANGE', key('leases'), '-inf', NOW, 'BYSCORE', 'LIMIT', 0, ARGS.limit)
table.sort(lapsed, bytes_less)
local expired = {}
local requeued_ids = {}
local requeued, failed = 0, 0
for _, specialist_id in ipairs(lapsed) do
  rcall('ZREM', key('leases'), specialist_id)
  local spec = spec_get(specialist_id)
  if spec and (spec.avail ~= 'offline' or spec.active > 0) then
    spec_write('HSET', specialist_id, 'avail', 'offline', 'active', 0)
    local held = held_oldest_last(specialist_id)
    rcall('DEL', key('held', specialist_id))
    reindex_free(specialist_id)
    for _, subtask_id in ipairs(held) do
      local revoked = holder_of(sub_get(subtask_id))
      local detail = 'lease of specialist ' .. specialist_id .. ' lapsed'
      if requeue_or_fail(subtask_id, true, detail) then
        requeued = requeued + 1
        table.insert(requeued_ids, subtask_id)
      else
        failed = failed + 1
      end
      publish_revoked(revoked, subtask_id)
    end
    if spec.avail ~= 'offline' then
      outbox({kind = 'specialist_availability', specialist_id = specialist_id,
        availability = 'offline'})
    end
    table.insert(expired, specialist_id)
  end
end
place_all(requeued_ids)
return done({expired = expired, requeued = requeued, failed = failed,
  more = #lapsed >= ARGS.limit})
