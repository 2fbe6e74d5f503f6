--[[
  register: add a specialist or update its registration (type fixed), renew its lease, and give it
  whatever queued work it can take now.
  KEYS[1] string  meta key (see includes/lib.lua for the common KEYS/ARGV)
  ARGV[3] json    {specialist_id|null, specialist_type, capabilities[], max_concurrency|null,
                   labels (json object as text), availability}
  Returns {specialist, created}. Errors: 3 the id is registered under another type.
  Writes: spec:<id>, specs, specs:<type>, cap:<type>:<c>, free:<type>, leases, and what the drain
  assigns. Events: specialist_registered (outbox), ASSIGNED (watch) per drained subtask.
]]
local spec_type = ARGS.specialist_type
local specialist_id = ARGS.specialist_id
if specialist_id == nil or specialist_id == cjson.null or specialist_id == '' then
  repeat
    local counter = rcall('INCR', key('minted', spec_type))
    specialist_id = 'specialist-' .. spec_type .. '-' .. string.format('%d', counter)
  until rcall('EXISTS', key('spec', specialist_id)) == 0
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
  rcall('ZADD', key('specs', spec_type), 0, specialist_id)
end
for _, capability in ipairs(old_caps) do
  rcall('SREM', key('cap', spec_type, capability), specialist_id)
end
for _, capability in ipairs(ARGS.capabilities) do
  rcall('SADD', key('cap', spec_type, capability), specialist_id)
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
