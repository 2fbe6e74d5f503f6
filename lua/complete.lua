--[[
  complete: a completion report (fenced by specialist and epoch): records the outcome in the
  specialist's performance, frees its slot (which takes queued work), finishes the subtask
  COMPLETED or FAILED and settles its dependents. The same report again returns the result.
  ARGV[3] json  {subtask_id, specialist_id, epoch, success, completion_time_ms, quality_score, detail}
  Returns {view}. Errors: 2 unknown subtask; 3 not assigned, other holder or stale epoch.
  Events: completion_reported and subtask_changed (outbox), ASSIGNED/none (watch).
]]
local subtask_id = ARGS.subtask_id
local specialist_id = ARGS.specialist_id
local record = sub_get(subtask_id)
local reported_state = 'FAILED'
if ARGS.success then reported_state = 'COMPLETED' end
if record and record.holder == specialist_id and record.epoch == ARGS.epoch
  and record.state == reported_state then
  return done({view = view_of(record)})
end
local _, refused = fenced(record, subtask_id, specialist_id, ARGS.epoch)
if refused then return refused end
local holder_type = free_holder_slot(specialist_id, subtask_id)
local perf_key = key('perf', specialist_id)
local perf = rcall('HMGET', perf_key, 'qsum', 'tsum', 'w')
local quality_sum = tonumber(perf[1] or '0') + ARGS.quality_score
local time_sum = tonumber(perf[2] or '0') + ARGS.completion_time_ms
local outcome = '0'
if ARGS.success then outcome = '1' end
local recent = (perf[3] or '') .. outcome
if #recent > WINDOW then recent = string.sub(recent, #recent - WINDOW + 1) end
local _, successes = string.gsub(recent, '1', '1')
local factor_value = (successes + PRIOR_WEIGHT * PRIOR) / (#recent + PRIOR_WEIGHT)
rcall('HINCRBY', perf_key, 'completed', 1)
if ARGS.success then rcall('HINCRBY', perf_key, 'succeeded', 1) end
rcall('HSET', perf_key, 'qsum', fmt(quality_sum), 'tsum', fmt(time_sum), 'w', recent,
  'pf', fmt(factor_value))
performance_forget(specialist_id)
reindex_free(specialist_id)
if holder_type then drain_for(specialist_id) end
local detail = ARGS.detail
if not ARGS.success and detail == '' then
  detail = 'specialist ' .. specialist_id .. ' reported failure'
end
finish(subtask_id, reported_state, detail)
outbox({kind = 'completion_reported', subtask_id = subtask_id, specialist_id = specialist_id,
  epoch = ARGS.epoch, success = ARGS.success, completion_time_ms = ARGS.completion_time_ms,
  quality_score = fmt(ARGS.quality_score)})
return done(view_result(subtask_id))
