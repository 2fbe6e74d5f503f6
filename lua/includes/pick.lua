--[[
  pick: who gets a subtask. The free index `free` lists specialists with room by minus the best
  score each could reach (capability 1), members `<active>:<last epoch>:<id>` zero-padded, so
  equal bounds sort in tie-break order; a sentinel member (SENTINEL, score +inf, longer than a
  listpack entry may be) keeps the index a skiplist and ends every walk. The pick walks it from
  the top and stops at the first entry that cannot beat the best real score found.

  A hand-out records the breakdown's inputs in `bd`: "<matched> <required> <active> <availability>
  <performance>" (performance: "<successes>/<outcomes>" of the window, or the learned factor as
  Rust sent it), plus the four learned weights when the subtask has learned factors; Rust
  computes the breakdown from them with domain::score (bit for bit the score used here).
]]

-- Learned factors a subtask keeps: "<wc> <wl> <wa> <wp> <id> <factor> ...", decoded once per call.
local function learned_of(r)
  sub_static(r)
  if r.lf == '' then return nil end
  if not r.learned then
    local items = split(r.lf)
    local factors = {}
    for i = 5, #items, 2 do factors[items[i]] = items[i + 1] end
    r.learned = {
      weights = {tonum(items[1]), tonum(items[2]), tonum(items[3]), tonum(items[4])},
      weights_text = items[1] .. ' ' .. items[2] .. ' ' .. items[3] .. ' ' .. items[4],
      factors = factors
    }
  end
  return r.learned
end

-- Whether a specialist released it (and is not offered it again).
local function excluded(r, specialist_id)
  if r.excl == '' then return false end
  if not r.excluded then r.excluded = set_of(split(r.excl)) end
  return r.excluded[specialist_id] == true
end

-- Whether the specialist has what the subtask needs, and how many of its capabilities it has.
local function capabilities_suffice(r, s)
  local needles = sub_needles(r)
  if #needles == 0 then return true, 0 end
  local matched = 0
  for i = 1, #needles do
    if spec_has(s, needles[i]) then matched = matched + 1 end
  end
  if r.all == '1' then return matched == #needles, matched end
  return matched > 0, matched
end

-- The score of an eligible specialist for a subtask, with the matched count and the performance
-- input; nil when it is not eligible.
local function consider(r, s)
  if not s or free_slots(s) <= 0 then return nil end
  local suffices, matched = capabilities_suffice(r, s)
  if not suffices or excluded(r, s.id) then return nil end
  local weights = POL.weights
  local performance = spec_performance(s)
  -- The performance input as `bd` records it: false for the rule window (hand_out writes it).
  local performance_text = false
  local learned = learned_of(r)
  if learned then
    weights = learned.weights
    local factor = learned.factors[s.id]
    if factor then
      performance = clamp_unit(tonum(factor))
      performance_text = factor
    end
  end
  local required = #sub_required(r)
  local capability = 1.0
  if required > 0 then capability = matched / required end
  return score_of(capability, load_factor(s.act), AVAILABILITY[s.av], performance, weights),
    matched, performance_text
end

-- Tie-break order of free-index members: fewer held, assigned longest ago, smaller id (bytes).
local function member_less(a, b)
  local held_a, held_b = tonum(ssub(a, 1, 10)), tonum(ssub(b, 1, 10))
  if held_a ~= held_b then return held_a < held_b end
  local last_a, last_b = tonum(ssub(a, 12, 31)), tonum(ssub(b, 12, 31))
  if last_a ~= last_b then return last_a < last_b end
  return bytes_less(ssub(a, 33), ssub(b, 33))
end

-- The best eligible specialist: {s, score, matched, performance text}, or nil. With learned
-- factors the index's rule-based bound says nothing: everyone with room is scored.
local function pick(r)
  local required = sub_required(r)
  local prune = learned_of(r) == nil
  local checked = false
  local best = nil
  local offset, batch = 0, 2
  while true do
    local entries = rcall('ZRANGE', P .. K.free, '-inf', '+inf', 'BYSCORE', 'LIMIT', offset,
      batch, 'WITHSCORES')
    for i = 1, #entries, 2 do
      local member = entries[i]
      if member == SENTINEL then return best end
      local bound = -tonum(entries[i + 1])
      if prune and best and (bound < best.score
        or (bound == best.score and member_less(best.member, member))) then
        return best
      end
      local s = spec_get(ssub(member, 33))
      local score, matched, performance = consider(r, s)
      if score and (not best or score > best.score
        or (score == best.score and member_less(member, best.member))) then
        best = {s = s, score = score, member = member, matched = matched,
          performance = performance}
      end
    end
    if not best and not checked and #required > 0 then
      -- Nobody of the type has the capabilities: no need to look at who else has room.
      if not any_capable(required, r.all == '1') then return nil end
      checked = true
    end
    if #entries < batch * 2 then return best end
    offset = offset + batch
    batch = mmin(batch * 4, 64)
  end
end

-- Gives a subtask (not queued, not held) to a specialist with a fresh epoch.
local function hand_out(r, s, matched, performance)
  local epoch = rcall('INCR', P .. K.epoch)
  local inputs
  if performance then
    inputs = sformat('%d %d %d %s %s', matched, #sub_required(r), s.act, s.av, performance)
  else
    inputs = sformat('%d %d %d %s %d/%d', matched, #sub_required(r), s.act, s.av, s.ws, s.wn)
  end
  local learned = learned_of(r)
  if learned then inputs = inputs .. ' ' .. learned.weights_text end
  spec_set(s, 'act', s.act + 1)
  spec_set(s, 'lseq', epoch)
  refile(s)
  sub_set(r, 'st', 'ASSIGNED')
  sub_set(r, 'hold', s.id)
  sub_set(r, 'ep', sformat('%d', epoch))
  sub_set(r, 'at', NOW_TEXT)
  sub_set(r, 'bd', inputs)
  spec_set(s, 'hl', list_append(s.hl, r.id))
  touch(r)
  publish(s.id, 'ASSIGNED', r)
end

-- Assigns a ready subtask to the best eligible specialist, or queues it at the tail. Valid while
-- the queue invariant holds (no queued subtask servable now).
local function route_ready(r)
  local best = pick(r)
  if best then
    hand_out(r, best.s, best.matched, best.performance)
  else
    enqueue(r, false)
  end
end

-- A queued subtask goes to the best eligible specialist now, if there is one.
local function place_queued(r)
  if not r or r.st ~= 'QUEUED' then return end
  local best = pick(r)
  if not best then return end
  take_from_queue(r)
  hand_out(r, best.s, best.matched, best.performance)
end

-- The first subtask of one queue index, after `lower`, that the specialist can take.
local function first_servable(index_key, lower, s)
  while true do
    local entries = rcall('ZRANGE', index_key, lower, '+inf', 'BYSCORE', 'LIMIT', 0, 32,
      'WITHSCORES')
    if #entries == 0 then return nil, lower end
    for i = 1, #entries, 2 do
      local r = sub_get(entries[i], true)
      if r and capabilities_suffice(r, s) and not excluded(r, s.id) then
        return r, lower
      end
      lower = '(' .. entries[i + 1]
    end
    if #entries < 64 then return nil, lower end
  end
end

-- Capacity appeared at one specialist only: by the queue invariant it alone can take new work,
-- so only the queue entries it could serve (its capability indexes) are walked, in queue order.
local function drain_for(s)
  if not s or free_slots(s) <= 0 then return end
  if rcall('EXISTS', P .. K.queue) == 0 then return end
  local caps_list = spec_caps(s)
  local index_keys = {P .. K.qany}
  for i = 1, #caps_list do index_keys[i + 1] = P .. K.qcap .. caps_list[i] end
  local cursors = {}
  for i = 1, #index_keys do cursors[i] = '-inf' end
  while free_slots(s) > 0 do
    local chosen, chosen_score = nil, nil
    for i = 1, #index_keys do
      local r, lower = first_servable(index_keys[i], cursors[i], s)
      cursors[i] = lower
      if r then
        local queue_score = tonum(r.qs)
        if not chosen or queue_score < chosen_score then
          chosen, chosen_score = r, queue_score
        end
      end
    end
    if not chosen then return end
    local _, matched, performance = consider(chosen, s)
    take_from_queue(chosen)
    hand_out(chosen, s, matched, performance)
  end
end

-- Subtasks requeued by a departure go to whoever can take them, in queue order (the rest of the
-- queue is, by the queue invariant, unservable by anyone, so this is the whole drain).
local function place_all(records)
  local ordered = {}
  for i = 1, #records do
    local r = records[i]
    if r.st == 'QUEUED' then ordered[#ordered + 1] = r end
  end
  tsort(ordered, function(a, b) return tonum(a.qs) < tonum(b.qs) end)
  for i = 1, #ordered do place_queued(ordered[i]) end
end
