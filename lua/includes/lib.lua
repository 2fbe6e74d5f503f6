--[[
  Shared helpers of every Switchboard script (prepended to each command script by
  src/store/redis/scripts.rs). They implement the rules of src/store/README.md on the key
  layout of lua/README.md, exactly as the embedded store does in src/store/memory/.

  Every script runs in one specialist type's slot and is called with
    KEYS[1]  string  the type's meta key `<prefix>meta`; every key a script touches starts with
                     <prefix> = `sb:{<namespace>:<type>}:`, the type's one hash tag, so a script
                     touches one Redis Cluster slot
    ARGV[1]  json    the routing policy (fallback, weights, default max concurrency,
                     lease ttl, max attempts, whether the outbox is on, outbox bound, watch channel)
    ARGV[2]  string  the clock in ms; empty: Redis TIME (tests pin it to compare stores)
    ARGV[3]  json    the command's arguments
    ARGV[4]  string  the slot's specialist type
  and returns one JSON document: the result, or {"err": <code>, "msg": <text>}. What crosses
  types (fallback routing, dependencies, id lookups) the store does in several steps, each one
  script in one slot; see lua/README.md.
  Error codes: 1 specialist not found, 2 subtask not found, 3 failed precondition,
  4 already exists, 5 history backlog full, 6 invalid argument.
]]
local rcall = redis.call
local META = KEYS[1]
local P = string.sub(META, 1, #META - 4)
local POLICY = cjson.decode(ARGV[1])
local NOW
if ARGV[2] ~= '' then
  NOW = tonumber(ARGV[2])
else
  local time = rcall('TIME')
  NOW = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local ARGS = cjson.decode(ARGV[3])
local SLOT = ARGV[4]
local W = POLICY.weights
local PRIOR = 0.75
local PRIOR_WEIGHT = 2.0
local WINDOW = 20
local QUEUE_BAND = 1099511627776 -- 2^40: queue score = -priority * 2^40 + sequence

-- Byte order, as Rust compares strings (Lua's `<` follows the server's collation locale).
local function bytes_less(a, b)
  if a == b then return false end
  local length = math.min(#a, #b)
  local i = 1
  while i <= length do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
    i = i + 1
  end
  return #a < #b
end

local function key(...)
  return P .. table.concat({...}, ':')
end

local function fail(code, message)
  return cjson.encode({err = code, msg = message})
end

local function fmt(number)
  return string.format('%.17g', number)
end

local function decode_list(text)
  if text == nil or text == false or text == '' or text == '[]' then
    return {}
  end
  return cjson.decode(text)
end

local function encode_list(list)
  if #list == 0 then
    return '[]'
  end
  return cjson.encode(list)
end

-- Specialists ------------------------------------------------------------------------------

local SPEC_FIELDS = {'type', 'caps', 'max', 'labels', 'avail', 'reg', 'hb', 'lease', 'active',
  'lseq', 'fm'}

-- Records read in this call (false: known missing). A step reads the same records many times;
-- every write goes through spec_write / sub_write, which drop the copy. Records are never
-- changed in place, so a caller's record stays as it was read.
local SPECS = {}

local function spec_get(id)
  local cached = SPECS[id]
  if cached ~= nil then
    return cached or nil
  end
  local values = rcall('HMGET', key('spec', id), unpack(SPEC_FIELDS))
  if not values[1] then
    SPECS[id] = false
    return nil
  end
  local spec = {
    id = id, type = values[1], caps = decode_list(values[2]), caps_json = values[2],
    max = tonumber(values[3]), labels = values[4], avail = values[5], reg = tonumber(values[6]),
    hb = tonumber(values[7]), lease = tonumber(values[8]), active = tonumber(values[9]),
    lseq = tonumber(values[10]), fm = values[11]
  }
  SPECS[id] = spec
  return spec
end

local function spec_write(command, id, ...)
  SPECS[id] = nil
  return rcall(command, key('spec', id), ...)
end

local function spec_forget(id)
  SPECS[id] = nil
end

local function can_take_work(spec)
  return spec.avail ~= 'offline' and spec.lease > NOW
end

local function free_slots(spec)
  if not can_take_work(spec) then
    return 0
  end
  return math.max(spec.max - spec.active, 0)
end

local PERFORMANCE = {}

local function performance_factor(id)
  local cached = PERFORMANCE[id]
  if cached then
    return cached
  end
  local factor = rcall('HGET', key('perf', id), 'pf')
  if factor then factor = tonumber(factor) else factor = PRIOR end
  PERFORMANCE[id] = factor
  return factor
end

-- After a write to the specialist's performance record.
local function performance_forget(id)
  PERFORMANCE[id] = nil
end

local AVAILABILITY_FACTOR = {online = 1.0, idle = 0.9, busy = 0.7, away = 0.3, offline = 0.0}

local function load_factor(active)
  if active == 0 then return 1.0 end
  if active <= 2 then return 0.8 end
  if active <= 4 then return 0.6 end
  if active <= 9 then return 0.4 end
  return 0.1
end

local function factor(value, weight)
  return {value = value, weight = weight, points = 100.0 * value * weight}
end

-- The score of src/domain/scoring.rs, operation for operation, so both stores agree bit for bit.
-- `weights`: the policy's, or those a subtask's learned factors came with.
local function score(required, caps_set, active, avail, performance, weights)
  weights = weights or W
  local capability = 1.0
  if #required > 0 then
    local matched = 0
    for _, wanted in ipairs(required) do
      if caps_set[wanted] then matched = matched + 1 end
    end
    capability = matched / #required
  end
  if performance < 0.0 then performance = 0.0 end
  if performance > 1.0 then performance = 1.0 end
  local breakdown = {
    capability = factor(capability, weights.capability),
    load = factor(load_factor(active), weights.load),
    availability = factor(AVAILABILITY_FACTOR[avail], weights.availability),
    performance = factor(performance, weights.performance)
  }
  breakdown.score = breakdown.capability.points + breakdown.load.points
    + breakdown.availability.points + breakdown.performance.points
  return breakdown
end

local function breakdown_json(breakdown)
  local function f(part)
    return {value = fmt(part.value), weight = fmt(part.weight), points = fmt(part.points)}
  end
  return cjson.encode({
    score = fmt(breakdown.score), capability = f(breakdown.capability), load = f(breakdown.load),
    availability = f(breakdown.availability), performance = f(breakdown.performance)
  })
end

local function free_member(active, lseq, id)
  return string.format('%010d:%020d:', active, lseq) .. id
end

-- Re-files a specialist in its type's free index (who has room, best possible score first).
-- Moves the specialist's free-index entry to where `active` and `lseq` put it; returns the new
-- member ('' when it has no room). The caller stores the member in the record's `fm`.
local function refile_free(spec, active, lseq)
  if spec.fm and spec.fm ~= '' then
    rcall('ZREM', key('free'), spec.fm)
  end
  if spec.avail == 'offline' or active >= spec.max then
    return ''
  end
  local bound = score({}, {}, active, spec.avail, performance_factor(spec.id)).score
  local member = free_member(active, lseq, spec.id)
  rcall('ZADD', key('free'), -bound, member)
  return member
end

local function reindex_free(id)
  local spec = spec_get(id)
  if not spec then
    return
  end
  spec_write('HSET', id, 'fm', refile_free(spec, spec.active, spec.lseq))
end

local function caps_set_of(caps)
  local set = {}
  for _, capability in ipairs(caps) do set[capability] = true end
  return set
end

local function capabilities_suffice(caps_set, required, require_all)
  if #required == 0 then return true end
  local matched = 0
  for _, wanted in ipairs(required) do
    if caps_set[wanted] then matched = matched + 1 end
  end
  if require_all then return matched == #required end
  return matched > 0
end

-- Answers of any_capable in this call; register and deregister (which change who is registered)
-- call capabilities_changed.
local CAPABLE = {}

local function capabilities_changed()
  CAPABLE = {}
end

-- Whether any registered specialist of this slot's type (whatever its availability) could serve it.
local function any_capable_uncached(required, require_all)
  if rcall('ZCARD', key('specs')) == 0 then
    return false
  end
  if #required == 0 then
    return true
  end
  if not require_all then
    for _, capability in ipairs(required) do
      if rcall('EXISTS', key('cap', capability)) == 1 then return true end
    end
    return false
  end
  local command = {'SINTERCARD', #required}
  for _, capability in ipairs(required) do
    table.insert(command, key('cap', capability))
  end
  table.insert(command, 'LIMIT')
  table.insert(command, 1)
  return rcall(unpack(command)) > 0
end

local function any_capable(required, require_all)
  local question = table.concat(required, '\0') .. '\0' .. tostring(require_all)
  local answer = CAPABLE[question]
  if answer == nil then
    answer = any_capable_uncached(required, require_all)
    CAPABLE[question] = answer
  end
  return answer
end

-- Where a new subtask requested for this slot's type goes (the rule of the embedded store: its
-- own type if anyone there could serve it, else the fallback type if anyone there could, else its
-- own type). The fallback type is another slot: 'ask' means "call again with the fallback's
-- answer" (fallback_capable, from capable.lua there); then 'here' or 'forward'.
local function route_new(required, require_all, fallback_capable)
  if any_capable(required, require_all) then return 'here' end
  local fallback = POLICY.fallback
  if not fallback or fallback == cjson.null or fallback == SLOT then return 'here' end
  if fallback_capable == nil or fallback_capable == cjson.null then return 'ask' end
  if fallback_capable then return 'forward' end
  return 'here'
end

-- Subtasks ----------------------------------------------------------------------------------

local SUB_FIELDS = {'spec', 'created', 'state', 'attempt', 'rtype', 'holder', 'epoch', 'at', 'bd',
  'qs', 'enq', 'waiting', 'excl', 'detail', 'fin', 'caps', 'all', 'prio', 'lf', 'rw'}

local SUBS = {}

local function sub_write(command, id, ...)
  SUBS[id] = nil
  return rcall(command, key('sub', id), ...)
end

local function sub_get(id)
  local cached = SUBS[id]
  if cached ~= nil then
    return cached or nil
  end
  local values = rcall('HMGET', key('sub', id), unpack(SUB_FIELDS))
  if not values[1] then
    SUBS[id] = false
    return nil
  end
  local record = {id = id}
  for i, field in ipairs(SUB_FIELDS) do
    if values[i] then record[field] = values[i] else record[field] = nil end
  end
  record.attempt = tonumber(record.attempt)
  record.epoch = tonumber(record.epoch or '0')
  record.required = decode_list(record.caps)
  record.require_all = record.all == '1'
  record.priority = tonumber(record.prio)
  if record.lf and record.lf ~= '' then
    -- Learned factors it was submitted with: {weights, performance: {specialist id: factor}}.
    record.learned = cjson.decode(record.lf)
  end
  SUBS[id] = record
  return record
end

-- The decoded score breakdown of the current holder, decoded once per record read.
local function breakdown_of(record)
  if record.breakdown == nil then
    record.breakdown = cjson.decode(record.bd)
  end
  return record.breakdown
end

local function queue_rank(subtask_id)
  local rank = rcall('ZRANK', key('queue'), subtask_id)
  if not rank then return nil end
  return rank + 1
end

-- The assignment view (domain AssignmentView) as JSON-ready table; holder override for REVOKED.
local function view_of(record, holder_override)
  local view = {
    subtask_id = record.id, state = record.state, attempt = record.attempt,
    routed_type = record.rtype, waiting_on = decode_list(record.waiting),
    detail = record.detail or '', created_at_ms = tonumber(record.created)
  }
  if record.fin and record.fin ~= '' then view.finished_at_ms = tonumber(record.fin) end
  if holder_override then
    view.holder = holder_override
  elseif record.holder and record.holder ~= '' then
    view.holder = {
      specialist_id = record.holder, epoch = record.epoch, assigned_at_ms = tonumber(record.at),
      breakdown = breakdown_of(record)
    }
  end
  if record.state == 'QUEUED' then view.queue_position = queue_rank(record.id) end
  return view
end

local function holder_of(record)
  if not record.holder or record.holder == '' then return nil end
  return {
    specialist_id = record.holder, epoch = record.epoch, assigned_at_ms = tonumber(record.at),
    breakdown = breakdown_of(record)
  }
end

-- Outbox and watch events -------------------------------------------------------------------

local TOUCHED = {}
local TOUCHED_ORDER = {}

local function touch(subtask_id)
  if not TOUCHED[subtask_id] then
    TOUCHED[subtask_id] = true
    table.insert(TOUCHED_ORDER, subtask_id)
  end
end

local function outbox(event)
  if POLICY.outbox then
    rcall('XADD', key('outbox'), '*', 'e', cjson.encode(event))
  end
end

-- One SubtaskChanged event per subtask this step changed, with the state it ended in.
local function flush_changes()
  if not POLICY.outbox then
    return
  end
  for _, subtask_id in ipairs(TOUCHED_ORDER) do
    local record = sub_get(subtask_id)
    if record then
      local event = {
        kind = 'subtask_changed', subtask_id = subtask_id, state = record.state,
        attempt = record.attempt, epoch = record.epoch, detail = record.detail or ''
      }
      if record.holder and record.holder ~= '' then
        event.specialist_id = record.holder
        event.breakdown = breakdown_of(record)
      end
      outbox(event)
    end
  end
end

local function publish(specialist_id, kind, record, holder_override)
  local event = {
    to = specialist_id, kind = kind, assignment = view_of(record, holder_override),
    spec = record.spec, created_at_ms = tonumber(record.created)
  }
  rcall('PUBLISH', POLICY.channel, cjson.encode(event))
end

local function publish_revoked(revoked, subtask_id)
  if not revoked then return end
  local record = sub_get(subtask_id)
  if record then publish(revoked.specialist_id, 'REVOKED', record, revoked) end
end

-- Routing -----------------------------------------------------------------------------------

local function excluded_set(record)
  local set = {}
  for _, id in ipairs(decode_list(record.excl)) do set[id] = true end
  return set
end

-- Scores one specialist for a subtask if eligible; returns its rank or nil.
local function consider(record, spec, excluded)
  if not spec or free_slots(spec) <= 0 then return nil end
  local caps_set = caps_set_of(spec.caps)
  if not capabilities_suffice(caps_set, record.required, record.require_all) then return nil end
  if excluded[spec.id] then return nil end
  local performance = performance_factor(spec.id)
  local weights = nil
  if record.learned then
    weights = record.learned.weights
    local learned = record.learned.performance[spec.id]
    if learned then
      performance = math.min(math.max(learned, 0.0), 1.0)
    end
  end
  local breakdown = score(record.required, caps_set, spec.active, spec.avail, performance,
    weights)
  return {
    id = spec.id, score = breakdown.score, member = free_member(spec.active, spec.lseq, spec.id),
    breakdown = breakdown
  }
end

-- The best eligible specialist: walks the free index from the highest possible score down and
-- stops once nobody left could beat the best real score (equal bounds are in tie-break order).
-- With learned factors the index's rule-based bound says nothing: everyone with room is scored.
local function pick(record)
  -- Nobody of the type has the capabilities: no need to look at who has room.
  if #record.required > 0 and not any_capable(record.required, record.require_all) then
    return nil
  end
  local prune = not record.learned
  local best = nil
  local excluded = excluded_set(record)
  local free_key = key('free')
  local offset = 0
  -- The walk usually stops within the first few entries: start small, grow up to 64.
  local batch = 8
  while true do
    local entries = rcall('ZRANGE', free_key, '-inf', '+inf', 'BYSCORE', 'LIMIT', offset, batch,
      'WITHSCORES')
    if #entries == 0 then break end
    for i = 1, #entries, 2 do
      local member = entries[i]
      local bound = -tonumber(entries[i + 1])
      if prune and best and (bound < best.score
        or (bound == best.score and bytes_less(best.member, member))) then
        return best
      end
      local id = string.match(member, '^%d+:%d+:(.*)$')
      local rank = consider(record, spec_get(id), excluded)
      if rank and (not best or rank.score > best.score
        or (rank.score == best.score and bytes_less(rank.member, best.member))) then
        best = rank
      end
    end
    if #entries < batch * 2 then break end
    offset = offset + batch
    batch = math.min(batch * 4, 64)
  end
  return best
end

local function hand_out(subtask_id, specialist_id, breakdown)
  local epoch = rcall('INCR', key('epoch'))
  local assign_seq = rcall('INCR', key('aseq'))
  local spec = spec_get(specialist_id)
  local active = spec.active + 1
  local member = refile_free(spec, active, assign_seq)
  spec_write('HSET', specialist_id, 'active', active, 'lseq', assign_seq, 'fm', member)
  sub_write('HSET', subtask_id, 'state', 'ASSIGNED', 'holder', specialist_id,
    'epoch', epoch, 'at', NOW, 'bd', breakdown_json(breakdown))
  rcall('ZADD', key('held', specialist_id), epoch, subtask_id)
  touch(subtask_id)
  publish(specialist_id, 'ASSIGNED', sub_get(subtask_id))
end

local function queue_index_keys(record)
  if #record.required == 0 then
    return {key('qany')}
  end
  local keys = {}
  for i, capability in ipairs(record.required) do keys[i] = key('qcap', capability) end
  return keys
end

local function enqueue(subtask_id, at_head)
  local record = sub_get(subtask_id)
  if not record then return end
  local seq
  if at_head then seq = rcall('DECR', key('hseq')) else seq = rcall('INCR', key('tseq')) end
  local queue_score = -record.priority * QUEUE_BAND + seq
  rcall('ZADD', key('queue'), queue_score, subtask_id)
  for _, index_key in ipairs(queue_index_keys(record)) do
    rcall('ZADD', index_key, queue_score, subtask_id)
  end
  rcall('ZADD', key('qage'), NOW, subtask_id)
  sub_write('HSET', subtask_id, 'state', 'QUEUED', 'qs', fmt(queue_score), 'enq', NOW)
  touch(subtask_id)
end

local function take_from_queue(subtask_id)
  local record = sub_get(subtask_id)
  if not record or not record.qs or record.qs == '' then return end
  rcall('ZREM', key('queue'), subtask_id)
  for _, index_key in ipairs(queue_index_keys(record)) do
    rcall('ZREM', index_key, subtask_id)
  end
  rcall('ZREM', key('qage'), subtask_id)
  sub_write('HSET', subtask_id, 'qs', '')
end

local function route_ready(subtask_id)
  local record = sub_get(subtask_id)
  if not record then return end
  local best = pick(record)
  if best then
    hand_out(subtask_id, best.id, best.breakdown)
  else
    enqueue(subtask_id, false)
  end
end

local function place_queued(subtask_id)
  local record = sub_get(subtask_id)
  if not record or record.state ~= 'QUEUED' then return end
  local best = pick(record)
  if not best then return end
  take_from_queue(subtask_id)
  hand_out(subtask_id, best.id, best.breakdown)
end

-- The first subtask of one queue index, at or after `after`, that the specialist can take.
local function first_servable(index_key, after, spec, caps_set)
  local lower = after
  while true do
    local entries = rcall('ZRANGE', index_key, lower, '+inf', 'BYSCORE', 'LIMIT', 0, 32,
      'WITHSCORES')
    if #entries == 0 then return nil, lower end
    for i = 1, #entries, 2 do
      local record = sub_get(entries[i])
      if record and capabilities_suffice(caps_set, record.required, record.require_all)
        and not excluded_set(record)[spec.id] then
        return record, lower
      end
      lower = '(' .. entries[i + 1]
    end
    if #entries < 64 then return nil, lower end
  end
end

-- Capacity appeared at one specialist only: by the queue invariant it alone can take new work,
-- so walk, in queue order, only the queue entries it could serve (its capability indexes).
local function drain_for(specialist_id)
  local spec = spec_get(specialist_id)
  if not spec then return end
  local index_keys = {key('qany')}
  for _, capability in ipairs(spec.caps) do
    table.insert(index_keys, key('qcap', capability))
  end
  local cursors = {}
  for i = 1, #index_keys do cursors[i] = '-inf' end
  local caps_set = caps_set_of(spec.caps)
  while free_slots(spec) > 0 do
    local chosen = nil
    local chosen_score = nil
    for i, index_key in ipairs(index_keys) do
      local record, lower = first_servable(index_key, cursors[i], spec, caps_set)
      cursors[i] = lower
      if record then
        local queue_score = tonumber(record.qs)
        if not chosen or queue_score < chosen_score then
          chosen = record
          chosen_score = queue_score
        end
      end
    end
    if not chosen then return end
    local rank = consider(chosen, spec, excluded_set(chosen))
    take_from_queue(chosen.id)
    hand_out(chosen.id, specialist_id, rank.breakdown)
    spec = spec_get(specialist_id)
  end
end

-- Frees the holder's slot for a subtask; returns the holder's type.
local function free_holder_slot(specialist_id, subtask_id)
  local spec = spec_get(specialist_id)
  if not spec then return nil end
  if rcall('ZREM', key('held', specialist_id), subtask_id) == 1 then
    spec_write('HINCRBY', specialist_id, 'active', -1)
  end
  reindex_free(specialist_id)
  return spec.type
end

local settle_dependents

local function finish(subtask_id, state, detail)
  local fields = {'state', state, 'fin', NOW}
  if detail then
    table.insert(fields, 'detail')
    table.insert(fields, detail)
  end
  sub_write('HSET', subtask_id, unpack(fields))
  touch(subtask_id)
  settle_dependents(subtask_id)
end

-- remote: dependency id -> its type, for the dependencies in other slots (the store registers
-- this subtask with them after the script: depend.lua there).
local function block(subtask_id, waiting_on, remote)
  sub_write('HSET', subtask_id, 'state', 'BLOCKED', 'waiting', encode_list(waiting_on))
  local remote_types = {}
  for _, dependency_id in ipairs(waiting_on) do
    if remote[dependency_id] then
      table.insert(remote_types, {dependency_id, remote[dependency_id]})
    else
      rcall('RPUSH', key('deps', dependency_id), subtask_id)
    end
  end
  if #remote_types > 0 then
    sub_write('HSET', subtask_id, 'rw', cjson.encode(remote_types))
  end
  rcall('SADD', key('blocked'), subtask_id)
end

-- The dependencies in other slots that a BLOCKED subtask still waits on: [[id, type], ...].
local function remote_waits(record)
  if record.state ~= 'BLOCKED' or not record.rw or record.rw == '' then return {} end
  local waiting = {}
  for _, id in ipairs(decode_list(record.waiting)) do waiting[id] = true end
  local result = {}
  for _, entry in ipairs(cjson.decode(record.rw)) do
    if waiting[entry[1]] then table.insert(result, entry) end
  end
  return result
end

local function unblock(subtask_id)
  sub_write('HSET', subtask_id, 'waiting', '[]')
  rcall('SREM', key('blocked'), subtask_id)
end

-- Whether this step left dependents in other slots to tell (the `notify` list).
local NOTIFIED = false

-- One dependent learns that a dependency finished in `state`. Nothing happens unless it is
-- BLOCKED on that dependency (a repeated notice does nothing). A dependent it fails is appended to
-- `pending`, whose own dependents settle next.
local function settle_one(dependent_id, dependency_id, state, pending)
  local dependent = sub_get(dependent_id)
  if not dependent or dependent.state ~= 'BLOCKED' then return end
  local still = {}
  local waited = false
  for _, id in ipairs(decode_list(dependent.waiting)) do
    if id == dependency_id then waited = true else table.insert(still, id) end
  end
  if not waited then return end
  if state == 'COMPLETED' then
    sub_write('HSET', dependent_id, 'waiting', encode_list(still))
    touch(dependent_id)
    if #still == 0 then
      unblock(dependent_id)
      route_ready(dependent_id)
    end
  else
    sub_write('HSET', dependent_id, 'state', 'FAILED', 'fin', NOW, 'detail',
      'dependency ' .. dependency_id .. ' is ' .. state)
    touch(dependent_id)
    unblock(dependent_id)
    table.insert(pending, dependent_id)
  end
end

-- Settles the dependents of finished subtasks (and, transitively, of those that fail with them).
-- Dependents in this slot settle now; those in other slots are appended to `notify` as
-- [type, dependent, dependency, state], which the store delivers (settle.lua there) right after
-- this script and the lease sweeper retries.
local function settle_from(pending)
  while #pending > 0 do
    local dependency_id = table.remove(pending)
    local dependency = sub_get(dependency_id)
    if dependency then
      local waiting = rcall('LRANGE', key('deps', dependency_id), 0, -1)
      if #waiting > 0 then
        rcall('DEL', key('deps', dependency_id))
      end
      for _, entry in ipairs(waiting) do
        -- A dependent in another slot is "\0<type>\0<id>" (depend.lua).
        local target_type, target_id = string.match(entry, '^%z([^%z]*)%z(.*)$')
        if target_type then
          rcall('RPUSH', key('notify'),
            cjson.encode({target_type, target_id, dependency_id, dependency.state}))
          NOTIFIED = true
        else
          settle_one(entry, dependency_id, dependency.state, pending)
        end
      end
    end
  end
end

settle_dependents = function(finished_id)
  settle_from({finished_id})
end

-- Puts a subtask whose holder is gone back at the head of its queue, or fails it when out of
-- attempts (spent_attempt: release or lease lapse). Returns true when it was requeued.
local function requeue_or_fail(subtask_id, spent_attempt, detail)
  local record = sub_get(subtask_id)
  if not record then return false end
  sub_write('HSET', subtask_id, 'holder', '', 'detail', detail)
  touch(subtask_id)
  if spent_attempt then
    local max_attempts = POLICY.max_attempts
    if record.attempt >= max_attempts then
      sub_write('HSET', subtask_id, 'detail', detail .. '; no attempts left ('
        .. max_attempts .. ' of ' .. max_attempts .. ' spent)')
      finish(subtask_id, 'FAILED', nil)
      return false
    end
    sub_write('HINCRBY', subtask_id, 'attempt', 1)
  end
  enqueue(subtask_id, true)
  return true
end

-- Held subtasks, newest epoch first, so inserting each at the queue head leaves the oldest first.
local function held_oldest_last(specialist_id)
  return rcall('ZREVRANGE', key('held', specialist_id), 0, -1)
end

-- Subtasks requeued by a departure are placed in queue order (the rest of the queue is, by the
-- queue invariant, unservable by anyone, so this is the whole drain).
local function place_all(subtask_ids)
  local ordered = {}
  for _, subtask_id in ipairs(subtask_ids) do
    local record = sub_get(subtask_id)
    if record and record.state == 'QUEUED' then
      table.insert(ordered, {id = subtask_id, rtype = record.rtype, qs = tonumber(record.qs)})
    end
  end
  table.sort(ordered, function(a, b) return a.qs < b.qs end)
  for _, entry in ipairs(ordered) do place_queued(entry.id) end
end

local function specialist_json(spec)
  return {
    specialist_id = spec.id, specialist_type = spec.type, capabilities = spec.caps,
    max_concurrency = spec.max, labels = spec.labels, availability = spec.avail,
    active_assignments = spec.active, registered_at_ms = spec.reg, last_heartbeat_at_ms = spec.hb,
    lease_expires_at_ms = spec.lease, performance = fmt(performance_factor(spec.id))
  }
end

-- The holder of an ASSIGNED subtask if the caller names it and its current epoch, else an error.
local function fenced(record, subtask_id, specialist_id, epoch)
  if not record then
    return nil, fail(2, 'subtask ' .. subtask_id .. ' not found')
  end
  if record.state ~= 'ASSIGNED' or not record.holder or record.holder == '' then
    return nil, fail(3, 'subtask ' .. subtask_id .. ' is ' .. record.state .. ', not assigned')
  end
  if record.holder ~= specialist_id then
    return nil, fail(3, 'subtask ' .. subtask_id .. ' is not held by specialist ' .. specialist_id)
  end
  if record.epoch ~= epoch then
    return nil, fail(3, 'epoch ' .. string.format('%d', epoch) .. ' of subtask ' .. subtask_id
      .. ' is stale; the current epoch is ' .. string.format('%d', record.epoch))
  end
  return holder_of(record), nil
end

local function view_result(subtask_id)
  local record = sub_get(subtask_id)
  return {view = view_of(record)}
end

local function done(result)
  flush_changes()
  if NOTIFIED then result.notify = true end
  return cjson.encode(result)
end
