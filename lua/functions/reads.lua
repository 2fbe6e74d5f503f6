--[[
  reads: consistent reads of one type's slot; they write nothing.
  KEYS[1]  meta, or (by id, one Redis) the id's directory key (see context.lua)

  get_assignment  ARGV[4] subtask id -> {0, view, the subtask as submitted, its learned
                  factors ('' none)}; SUBTASK_NOT_FOUND
  in_flight       ARGV[4] specialist id -> {0, the type's epoch counter, {view, subtask} ...
                  oldest epoch first}, its incarnation ('' none); SPECIALIST_NOT_FOUND. Every
                  assignment up to that epoch happened before this read.
  queue_position  ARGV[4] subtask id -> {0, type, position, depth}; SUBTASK_NOT_FOUND,
                  NOT_QUEUED (state). ZRANK: O(log N).
  list_queue      ARGV[4] page size, ARGV[5] '' or the queue score after which the page starts
                  -> {0, depth, next token ('' none), {id, position, priority, attempt,
                  capabilities, enqueued} ...}; BAD_PAGE_TOKEN. O(log N + size).
  queue_stats     -> {0, depth, oldest wait ms, online, idle, busy, away, offline (a lapsed
                  lease counts as offline), active assignments, blocked, free capacity}.
                  O(specialists of the type) for the counts.
  get_specialist  ARGV[4] id -> {0, specialist}; SPECIALIST_NOT_FOUND
  list_specialists ARGV[4] page size, ARGV[5] '' or the last id of the previous page
                  -> {0, next token ('' none), {specialist ...}}. O(log N + size).
  performance     ARGV[4] id -> {0, completed, succeeded, quality sum, time sum, window};
                  SPECIALIST_NOT_FOUND when it was never known.
  capable         ARGV[4] capabilities, ARGV[5] '1' all -> {0, 1 or 0}: could any registered
                  specialist of this type serve them (the fallback type's answer assign asks).
]]

local function fn_get_assignment(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local r = sub_get(ARGV[4], true)
  if not r then return refuse(E.SUBTASK_NOT_FOUND) end
  return {0, view(r), sub_spec(r), r.lf}
end

local function fn_in_flight(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SPECIALIST_NOT_FOUND)
  if refused then return refused end
  local id = ARGV[4]
  local s = spec_get(id)
  if not s then return refuse(E.SPECIALIST_NOT_FOUND) end
  local events = {}
  local held = split(s.hl)
  for i = 1, #held do
    local r = sub_get(held[i])
    if r then events[#events + 1] = {view(r), sub_spec(r)} end
  end
  return {0, tonum(rcall('GET', P .. K.epoch) or '0'), events, s.inc}
end

local function fn_queue_position(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local r = sub_get(ARGV[4])
  if not r then return refuse(E.SUBTASK_NOT_FOUND) end
  if r.st ~= 'QUEUED' then return refuse(E.NOT_QUEUED, r.st) end
  return {0, TYPE, queue_rank(r.id), rcall('ZCARD', P .. K.queue)}
end

local function fn_list_queue(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local size, token = tonum(ARGV[4]), ARGV[5]
  local queue_key = P .. K.queue
  local lower, first_position = '-inf', 1
  if token ~= '' then
    if sfind(token, '^%-?%d+$') == nil then return refuse(E.BAD_PAGE_TOKEN) end
    lower = '(' .. token
    first_position = rcall('ZCOUNT', queue_key, '-inf', token) + 1
  end
  local found = rcall('ZRANGE', queue_key, lower, '+inf', 'BYSCORE', 'LIMIT', 0, size + 1,
    'WITHSCORES')
  local entries = {}
  local last_score = nil
  for i = 1, mmin(#found, size * 2), 2 do
    local r = sub_get(found[i], true)
    if r then
      entries[#entries + 1] = {r.id, first_position + (i - 1) / 2, r.prio, r.att, r.caps, r.enq}
    end
    last_score = found[i + 1]
  end
  local next_token = ''
  if #found > size * 2 and last_score then next_token = int_text(tonum(last_score)) end
  return {0, rcall('ZCARD', queue_key), next_token, entries}
end

local function fn_queue_stats(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local counts = {online = 0, idle = 0, busy = 0, away = 0, offline = 0}
  local active, free = 0, 0
  local ids = rcall('ZRANGE', P .. K.specs, 0, -1)
  for i = 1, #ids do
    local s = spec_get(ids[i])
    if s then
      local availability = s.av
      if s.lease <= NOW then availability = 'offline' end
      counts[availability] = counts[availability] + 1
      active = active + s.act
      free = free + free_slots(s)
    end
  end
  local oldest_wait = 0
  local oldest = rcall('ZRANGE', P .. K.qage, 0, 0, 'WITHSCORES')
  if #oldest > 0 then oldest_wait = mmax(NOW - tonum(oldest[2]), 0) end
  return {0, rcall('ZCARD', P .. K.queue), oldest_wait, counts.online, counts.idle, counts.busy,
    counts.away, counts.offline, active, rcall('SCARD', P .. K.blocked), free}
end

local function fn_get_specialist(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SPECIALIST_NOT_FOUND)
  if refused then return refused end
  local s = spec_get(ARGV[4], 'display')
  if not s then return refuse(E.SPECIALIST_NOT_FOUND) end
  return {0, specialist_reply(s)}
end

local function fn_list_specialists(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SPECIALIST_NOT_FOUND)
  if refused then return refused end
  local size, token = tonum(ARGV[4]), ARGV[5]
  local lower = '-'
  if token ~= '' then lower = '(' .. token end
  local ids = rcall('ZRANGE', P .. K.specs, lower, '+', 'BYLEX', 'LIMIT', 0, size + 1)
  local items = {}
  for i = 1, mmin(#ids, size) do
    local s = spec_get(ids[i])
    if s then items[#items + 1] = specialist_reply(s) end
  end
  local next_token = ''
  if #ids > size and #items > 0 then next_token = ids[size] end
  return {0, next_token, items}
end

local function fn_performance(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SPECIALIST_NOT_FOUND)
  if refused then return refused end
  local id = ARGV[4]
  local s = spec_get(id, 'perf')
  if s then return {0, s.pn, s.pok, s.pq, s.pt, s.w} end
  local perf = rcall('HMGET', P .. K.perf .. id, 'n', 'ok', 'q', 't', 'w')
  if not perf[1] then return refuse(E.SPECIALIST_NOT_FOUND) end
  return {0, tonum(perf[1]), tonum(perf[2] or '0'), perf[3], perf[4], perf[5] or ''}
end

local function fn_capable(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  if any_capable(split(ARGV[4]), ARGV[5] == '1') then return {0, 1} end
  return {0, 0}
end
