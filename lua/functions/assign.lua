--[[
  assign: accept a subtask and, in the same step, give it to the best eligible specialist (pick,
  load increment, assignment record, ASSIGNED event) or queue it FIFO within its priority;
  BLOCKED while dependencies are unfinished, FAILED when one failed. The same id with the same
  content returns the current assignment.
  KEYS[1]  meta of the requested type's slot (or, forwarded, of the fallback type's)
  KEYS[2]  the id's directory key, when ARGV[11] is 'k' (one Redis: the claim is made here)
  ARGV[4]  subtask id             ARGV[5]  the subtask as submitted (opaque)
  ARGV[6]  required capabilities  ARGV[7]  '1': require all of them
  ARGV[8]  priority
  ARGV[9]  dependencies: with claim 'k', their ids (read here, in any slot); otherwise
           "<id> <type> <state>" triples read by the store ('-': unknown)
  ARGV[10] learned factors ('' none; see pick.lua), kept for every later pick of it
  ARGV[11] the claim on the id: 'k' make it here (SET NX GET on KEYS[2]); 'n' the store's SET NX
           found it free; 'h' it names this type already; 't' it was just moved here; 'o' it
           names another type (the store knows which)
  ARGV[12] '1': forwarded here (no routing)      ARGV[13] fallback capable: '', '1' or '0'
  ARGV[14] the type that forwarded it ('' none)  ARGV[15] the type whose claim was voided ('')
  ARGV[16] '1': accepted into Postgres while Redis was away (already acknowledged): an unknown
           dependency fails it (FAILED, "dependency <id> is unknown") instead of refusing it
  Replies {0, 'view', view, remote waits (id type ...)}; {0, 'ask', fallback type} (nothing
  written; call again with ARGV[13] from `capable` there); {0, 'forward', type} (this slot now
  forwards the id: `mark:<id>`; call there with ARGV[12] '1'); {0, 'unclaimed', type ('' with
  claim 'o')} (another type holds the claim: `void` there); {0, 'retry'} (the claim moved away
  meanwhile).
  Refusals: ALREADY_EXISTS, BACKLOG_FULL (bound), UNKNOWN_DEPENDENCY (id).
  Writes t:<id>, mark:<id>, the queue and free indexes, deps:<dependency>, blocked; outbox `c`.
]]

local function route_new(required, require_all, fallback_capable)
  if any_capable(required, require_all) then return 'here' end
  local fallback = POL.fallback
  if fallback == '' or fallback == TYPE then return 'here' end
  if fallback_capable == '' then return 'ask' end
  if fallback_capable == '1' then return 'forward' end
  return 'here'
end

-- Waits on a dependency in another slot (one Redis only: the call may touch any slot).
local function depend_inline(dependency_type, dependency_id, dependent_id)
  local prefix = type_prefix(POL.namespace, dependency_type)
  rcall('RPUSH', prefix .. K.deps .. dependency_id, '\0' .. TYPE .. '\0' .. dependent_id)
  local record = prefix .. K.subtask .. dependency_id
  local dependency = sub_record(dependency_id, rcall('HGET', record, 'v'))
  if dependency.hd ~= '1' then
    dependency.hd = '1'
    rcall('HSET', record, 'v', pack_v(dependency))
  end
end

local function fn_assign(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local id, spec, caps, all = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  local claim, routed = ARGV[11], ARGV[12] == '1'
  local fresh = claim == 'n'
  -- The type holding the claim when it is not this one.
  local elsewhere = nil
  if claim == 'o' then elsewhere = '' end
  if claim == 'k' then
    local bound = rcall('SET', KEYS[2], TYPE, 'NX', 'GET')
    if not bound then
      fresh = true
    elseif bound ~= TYPE then
      elsewhere = bound
    end
  end
  if not fresh then
    local mark = rcall('GET', P .. K.mark .. id)
    if mark == 'void' then
      if claim == 't' then
        rcall('DEL', P .. K.mark .. id)
      elseif not elsewhere then
        -- The id's claim moved to another type after the store read the directory.
        return {0, 'retry'}
      end
    elseif mark then
      return {0, 'forward', ssub(mark, 5)}
    end
    local existing = sub_get(id, true)
    if existing then
      if sub_spec(existing) ~= spec then return refuse(E.ALREADY_EXISTS) end
      return flush({0, 'view', view(existing), remote_waits(existing)})
    end
    -- Another type holds the claim and nothing of the id is here: the store asks that type
    -- (`void` there) before it takes the claim over.
    if elsewhere then return {0, 'unclaimed', elsewhere} end
  elseif claim == 'n' then
    -- The same call run twice (a cluster client sends a call again when its first reply is
    -- late, and Redis may run both): the second finds what the first made.
    local existing = sub_get(id, true)
    if existing then
      if sub_spec(existing) ~= spec then return refuse(E.ALREADY_EXISTS) end
      return flush({0, 'view', view(existing), remote_waits(existing)})
    end
  end
  if POL.outbox and rcall('XLEN', P .. K.outbox) >= POL.outbox_bound then
    return refuse(E.BACKLOG_FULL, POL.outbox_bound)
  end
  local waiting, remote, inline, failed = {}, {}, {}, nil
  local dependencies = split(ARGV[9])
  local step = 3
  if claim == 'k' then step = 1 end
  for i = 1, #dependencies, step do
    local dependency_id = dependencies[i]
    local state
    if claim == 'k' then
      local dependency_type = rcall('GET', subtask_directory(POL.namespace, dependency_id))
      if dependency_type == TYPE then
        local dependency = sub_get(dependency_id)
        if dependency then state = dependency.st end
      elseif dependency_type then
        local packed = rcall('HGET', type_prefix(POL.namespace, dependency_type)
          .. K.subtask .. dependency_id, 'v')
        if packed then state = smatch(packed, '^([^\t]*)') end
        inline[dependency_id] = dependency_type
      end
    else
      local dependency_type, dependency_state = dependencies[i + 1], dependencies[i + 2]
      if dependency_type == TYPE then
        local dependency = sub_get(dependency_id)
        if dependency then state = dependency.st end
      elseif dependency_type ~= '-' and dependency_state ~= '-' then
        state = dependency_state
        remote[dependency_id] = dependency_type
      end
    end
    if not state then
      -- Accepted while Redis was away, it was acknowledged: it fails rather than vanish.
      if ARGV[16] ~= '1' then return refuse(E.UNKNOWN_DEPENDENCY, dependency_id) end
      if not failed then failed = {dependency_id, 'unknown'} end
    elseif state == 'FAILED' or state == 'CANCELLED' then
      if not failed then failed = {dependency_id, state} end
    elseif state ~= 'COMPLETED' then
      waiting[#waiting + 1] = dependency_id
    end
  end
  local r = {
    id = id, st = 'BLOCKED', att = '1', hold = '', ep = '0', at = '', bd = '', qs = '',
    enq = NOW_TEXT, wait = '', rw = '', excl = '', cr = NOW_TEXT, fin = '', hd = '', det = '',
    caps = caps, all = all, prio = tonum(ARGV[8]), lf = ARGV[10], from = ARGV[14],
    vd = ARGV[15], spec = spec, required = false, needles = false, learned = false,
    excluded = false, written = false, new = false, touched = false, packed = false
  }
  local best = nil
  if not failed and #waiting == 0 then best = pick(r) end
  if not routed and not best then
    local route = route_new(sub_required(r), all == '1', ARGV[13])
    if route == 'ask' then return {0, 'ask', POL.fallback} end
    if route == 'forward' then
      rcall('SET', P .. K.mark .. id, 'fwd:' .. POL.fallback)
      return {0, 'forward', POL.fallback}
    end
  end
  sub_new(r)
  touch(r)
  if failed then
    finish(r, 'FAILED', 'dependency ' .. failed[1] .. ' is ' .. failed[2])
  elseif #waiting > 0 then
    block(r, waiting, remote)
    for i = 1, #waiting do
      local dependency_type = inline[waiting[i]]
      if dependency_type then depend_inline(dependency_type, waiting[i], id) end
    end
  elseif best then
    hand_out(r, best.s, best.matched, best.performance)
  else
    enqueue(r, false)
  end
  return flush({0, 'view', view(r), remote_waits(r)})
end
