--[[
  text: lists as flat fields. Ids and capability names never contain whitespace (the API refuses
  them), so a list is its items joined by single spaces, and '' is the empty list.
]]

local function split(text)
  local items = {}
  if text == nil or text == false or text == '' then return items end
  for item in sgmatch(text, '%S+') do items[#items + 1] = item end
  return items
end

local function set_of(items)
  local set = {}
  for i = 1, #items do set[items[i]] = true end
  return set
end

-- Byte order, as Rust compares strings (Lua's `<` follows the server's collation locale).
local function bytes_less(a, b)
  if a == b then return false end
  local length = mmin(#a, #b)
  for i = 1, length do
    local x, y = sbyte(a, i), sbyte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- `list` (space-joined) without `item`, and whether it was there.
local function list_remove(list, item)
  local padded = ' ' .. list .. ' '
  local from, to = sfind(padded, ' ' .. item .. ' ', 1, true)
  if not from then return list, false end
  return ssub(ssub(padded, 1, from) .. ssub(padded, to + 1), 2, -2), true
end

-- `list` (space-joined) with `item` at the end.
local function list_append(list, item)
  if list == '' then return item end
  return list .. ' ' .. item
end

-- An integer as decimal text at full precision (Lua's own conversion keeps 14 digits).
local function int_text(number)
  return sformat('%d', number)
end
