--[[
  register: add a specialist or update its registration (type fixed), renew its lease, and give it
  whatever queued work it can take now.
  KEYS[1] string  meta key (see includes/lib.lua for the common KEYS/ARGV)
  Runs in the slot of the type; the store's directory binds the id to it first (a minted id is
  minted by the store from this slot's `minted` counter).
  ARGV[3] json    {specialist_id, capabilities[], max_concurrency|null, labels (json object as
                   text), availability, minted (a taken id is answered {taken}), rebind (the id
                   was just moved here: clear its moved mark), perf ({field: value} carried over
                   from the type it was bound to, or null)}
  Returns {specialist, created}, or {retry: true} when the id moved to another type since the
  store read the directory, or {taken: true} for a minted id registered already.
  Writes: spec:<id>, specs, cap:<c>, free, leases, moved:<id>, perf:<id>, and what the drain
  assigns. Events: specialist_registered (outbox), ASSIGNED (watch) per drained subtask.
]]
local spec_type = SLOT
local specialist_id = ARGS.specialist_id
if rcall('EXISTS', key('moved', specialist_id)) == 1 then
  if not ARGS.rebind then
    -- The id moved to another type after the store read the directory: read it again.
    return done({retry = true})
  end
  rcall('DEL', key('moved', specialist_id))
end
if ARGS.minted and spec_get(specialist_id) then
  return done({taken = true})
end
if ARGS.perf and ARGS.perf ~= cjson.null then
  -- Carried over from the type the id was bound to (unbind.lua there).
  local fields = {}
  for field, value in pairs(ARGS.perf) do
    table.insert(fields, field)
    table.insert(fields, value)
  end
  rcall('DEL', key('perf', specialist_id))
  if #fields > 0 then rcall('HSET', key('perf', specialist_id), unpack(fields)) end
  performance_forget(specialist_id)
end
local max_concurrency = ARGS.max_concurrency
if max_concurrency == nil or max_concurrency == cjson.null then
  max_concurrency = POLICY.default_max_concurrency
end
local lease = NOW + POLICY.lease_ttl_ms
local caps_json = encode_list(ARGS.capabilities)
local existing = spec_get(specialist_id)
local old_caps = {}
local created = false
if existing then
  if existing.type ~= spec_type then
    return fail(3, 'specialist ' .. specialist_id .. ' is registered as type ' .. existing.type
      .. '; deregister it before registering it as ' .. spec_type)
  end
  old_caps = existing.caps
  spec_write('HSET', specialist_id, 'caps', caps_json, 'max', max_concurrency,
    'labels', ARGS.labels, 'avail', ARGS.availability, 'hb', NOW, 'lease', lease)
else
  created = true
  spec_write('HSET', specialist_id, 'type', spec_type, 'caps', caps_json,
    'max', max_concurrency, 'labels', ARGS.labels, 'avail', ARGS.availability, 'reg', NOW,
    'hb', NOW, 'lease', lease, 'active', 0, 'lseq', 0, 'fm', '')
  rcall('ZADD', key('specs'), 0, specialist_id)
end
for _, capability in ipairs(old_caps) do
  rcall('SREM', key('cap', capability), specialist_id)
end
for _, capability in ipairs(ARGS.capabilities) do
  rcall('SADD', key('cap', capability), specialist_id)
end
capabilities_changed()
rcall('ZADD', key('leases'), lease, specialist_id)
reindex_free(specialist_id)
drain_for(specialist_id)
outbox({
  kind = 'specialist_registered', specialist_id = specialist_id, specialist_type = spec_type,
  capabilities = ARGS.capabilities, max_concurrency = max_concurrency, labels = ARGS.labels,
  availability = ARGS.availability
})
return done({specialist = specialist_json(spec_get(specialist_id)), created = created})
