--[[
  queue: the type's queue `queue` (zset: score = -priority x QUEUE_BAND + sequence, so higher
  priority first, then arrival; a requeue takes a decreasing head sequence), the same entries by
  what can serve them (`qany` for subtasks that need nothing, `qcap:<capability>` for each
  capability a subtask needs) and `qage` (enqueue times, for the oldest wait).
]]

local function queue_index_keys(r)
  local required = sub_required(r)
  if #required == 0 then return {P .. K.qany} end
  local keys = {}
  for i = 1, #required do keys[i] = P .. K.qcap .. required[i] end
  return keys
end

local function enqueue(r, at_head)
  sub_static(r)
  local seq
  if at_head then
    seq = rcall('DECR', P .. K.hseq)
  else
    seq = rcall('INCR', P .. K.tseq)
  end
  local score = -r.prio * QUEUE_BAND + seq
  rcall('ZADD', P .. K.queue, score, r.id)
  local keys = queue_index_keys(r)
  for i = 1, #keys do rcall('ZADD', keys[i], score, r.id) end
  rcall('ZADD', P .. K.qage, NOW, r.id)
  sub_set(r, 'st', 'QUEUED')
  sub_set(r, 'qs', int_text(score))
  sub_set(r, 'enq', NOW_TEXT)
  touch(r)
end

local function take_from_queue(r)
  if r.qs == nil or r.qs == '' then return end
  rcall('ZREM', P .. K.queue, r.id)
  local keys = queue_index_keys(r)
  for i = 1, #keys do rcall('ZREM', keys[i], r.id) end
  rcall('ZREM', P .. K.qage, r.id)
  sub_set(r, 'qs', '')
end
