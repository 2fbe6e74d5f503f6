--[[
  restore: writes back, without routing, state that Postgres kept and an empty Redis lost (the
  rebuild at start, src/store/redis/rebuild.rs): a finished subtask that unfinished ones depend on,
  or a specialist's performance record. Unfinished subtasks and specialists come back through
  assign and register instead. Does nothing for a subtask Redis already has.
  ARGV[3] json  {subtask: {spec, created_at_ms, routed_type, state, attempt, detail,
                 finished_at_ms|null}}
             or {performance: {specialist_id, completed, succeeded, quality_sum, time_sum, recent}}
  Returns {restored: bool}. Emits no events (Postgres has them already).
]]
if ARGS.subtask then
  local subtask = ARGS.subtask
  local spec = cjson.decode(subtask.spec)
  if rcall('EXISTS', key('sub', spec.subtask_id)) == 1 then
    return done({restored = false})
  end
  local all_flag = '0'
  if spec.require_all_capabilities then all_flag = '1' end
  local finished = subtask.finished_at_ms
  if finished == nil or finished == cjson.null then finished = '' end
  sub_write('HSET', spec.subtask_id, 'spec', subtask.spec,
    'created', subtask.created_at_ms, 'state', subtask.state, 'attempt', subtask.attempt,
    'rtype', subtask.routed_type, 'holder', '', 'epoch', 0, 'qs', '', 'enq', subtask.created_at_ms,
    'waiting', '[]', 'excl', '[]', 'detail', subtask.detail, 'fin', finished,
    'caps', encode_list(spec.required_capabilities), 'all', all_flag, 'prio', spec.priority)
  return done({restored = true})
end
local perf = ARGS.performance
local perf_key = key('perf', perf.specialist_id)
local recent = perf.recent
local _, successes = string.gsub(recent, '1', '1')
rcall('HSET', perf_key, 'completed', perf.completed, 'succeeded', perf.succeeded,
  'qsum', perf.quality_sum, 'tsum', perf.time_sum, 'w', recent,
  'pf', fmt((successes + PRIOR_WEIGHT * PRIOR) / (#recent + PRIOR_WEIGHT)))
performance_forget(perf.specialist_id)
return done({restored = true})
