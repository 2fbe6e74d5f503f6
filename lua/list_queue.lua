--[[
  list_queue: one page of a type's queue in order (priority, then arrival; requeued at the head).
  Runs in the type's slot.
  ARGV[3] json  {size, token|null (queue score of the previous page's last entry)}
  Returns {entries[], depth, next_page_token|null}. Errors: 6 a token this server did not issue.
  Cost: O(log N + size).
]]
local queue_key = key('queue')
local lower = '-inf'
local first_position = 1
if ARGS.token ~= nil and ARGS.token ~= cjson.null then
  local after = tonumber(ARGS.token)
  if not after or string.find(ARGS.token, '^%-?%d+$') == nil then
    return fail(6, 'page_token: not a token this server issued')
  end
  lower = '(' .. ARGS.token
  first_position = rcall('ZCOUNT', queue_key, '-inf', ARGS.token) + 1
end
local found = rcall('ZRANGE', queue_key, lower, '+inf', 'BYSCORE', 'LIMIT', 0, ARGS.size + 1,
  'WITHSCORES')
local entries = {}
local last_score = nil
for i = 1, math.min(#found, ARGS.size * 2), 2 do
  local record = sub_get(found[i])
  if record then
    table.insert(entries, {
      subtask_id = record.id, position = first_position + (i - 1) / 2, priority = record.priority,
      attempt = record.attempt, required_capabilities = record.required,
      enqueued_at_ms = tonumber(record.enq)
    })
  end
  last_score = found[i + 1]
end
local result = {entries = entries, depth = rcall('ZCARD', queue_key)}
if #found > ARGS.size * 2 and last_score then
  result.next_page_token = string.format('%d', tonumber(last_score))
end
return done(result)
