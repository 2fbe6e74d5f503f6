--[[
  complete: a completion report, fenced by specialist and epoch: records the outcome in the
  specialist's performance, frees its slot (which takes queued work), finishes the subtask
  COMPLETED or FAILED and settles its dependents. The same report again returns the result.
  KEYS[1]  meta, or the subtask's directory key (see context.lua)
  ARGV[4]  subtask id   ARGV[5] specialist id   ARGV[6] epoch   ARGV[7] '1' success
  ARGV[8]  completion time ms   ARGV[9] quality (text)   ARGV[10] detail
  ARGV[11] the holder's incarnation ('' none: fenced by the epoch alone)
  Replies {0, view}. Refusals: INCARNATION_ENDED (the one given), SUBTASK_NOT_FOUND,
  NOT_ASSIGNED (state), WRONG_HOLDER, STALE_EPOCH (current). Updates the holder's performance record (specialists.lua). Outbox: `f`
  (the subtask's change and the report in one entry).
]]

local function fn_complete(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local id, specialist_id, epoch = ARGV[4], ARGV[5], ARGV[6]
  local success = ARGV[7] == '1'
  local r = sub_get(id)
  local reported = 'FAILED'
  if success then reported = 'COMPLETED' end
  if r and r.hold == specialist_id and r.ep == epoch and r.st == reported then
    return flush({0, view(r)})
  end
  -- The holder is registered (leaving requeues what it holds, so it cannot report after).
  local s = spec_get(specialist_id, 'perf')
  refused = incarnation_refused(s, ARGV[11])
  if refused then return refused end
  refused = fenced(r, specialist_id, epoch)
  if refused then return refused end
  free_holder_slot(s, r)
  if s then
    local outcome = '0'
    if success then
      outcome = '1'
      spec_set(s, 'pok', s.pok + 1)
    end
    local window = s.w .. outcome
    if #window > WINDOW then window = ssub(window, #window - WINDOW + 1) end
    spec_set(s, 'pn', s.pn + 1)
    spec_set(s, 'pq', sformat('%.17g', tonum(s.pq) + tonum(ARGV[9])))
    spec_set(s, 'pt', sformat('%.17g', tonum(s.pt) + tonum(ARGV[8])))
    spec_set(s, 'w', window)
    spec_set(s, 'ws', window_successes(window))
    spec_set(s, 'wn', #window)
    refile(s)
    drain_for(s)
  end
  local detail = ARGV[10]
  if not success and detail == '' then
    detail = 'specialist ' .. specialist_id .. ' reported failure'
  end
  REPORT = {id = id, ok = ARGV[7], ms = ARGV[8], q = ARGV[9]}
  finish(r, reported, detail)
  return flush({0, view(r)})
end
