--[[
  list_specialists: one page of this slot's type's specialists in id order (the store merges the
  pages of every type when no type is asked for).
  ARGV[3] json  {size, token|null (the last id of the previous page)}
  Returns {items[], next_page_token|null}. Writes nothing. Cost: O(log N + size).
]]
local index_key = key('specs')
local lower = '-'
if ARGS.token ~= nil and ARGS.token ~= cjson.null then lower = '(' .. ARGS.token end
local ids = rcall('ZRANGE', index_key, lower, '+', 'BYLEX', 'LIMIT', 0, ARGS.size + 1)
local items = {}
for i = 1, math.min(#ids, ARGS.size) do
  table.insert(items, specialist_json(spec_get(ids[i])))
end
local result = {items = items}
if #ids > ARGS.size and #items > 0 then result.next_page_token = items[#items].specialist_id end
return done(result)
