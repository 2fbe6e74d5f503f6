--[[
  ids: moving a specialist id or a stale subtask-id claim from one type to another.

  unbind  KEYS[1] meta of the type the directory binds the specialist to; ARGV[4] specialist
          id, ARGV[5] the type it now registers as, ARGV[6] '1' a minted id. Refused while it
          is registered here; otherwise the id is marked moved (a registration here that read
          the directory before the move is told to retry) and a copy of its performance record
          goes with it (the copy here stays until the id comes back, when the record that comes
          with it replaces it, so a move cut short loses nothing).
          -> {0, 'perf', "<n> <ok> <q> <t> <w>" ('' none; w '-' when empty)}, or {0, 'taken'}
          for a minted id registered here; TYPE_MISMATCH (registered here). Writes moved:<id>.
  void    KEYS[1] meta of the type the directory binds a subtask id to; ARGV[4] subtask id. A
          submission of another type found nothing of it in its own slot. If the subtask (or
          its forward mark) is here, it exists; otherwise the claim was left by a submission
          that failed (or is on its way): the id is marked void here (that submission, should it
          still come, is told to retry) and the store moves the claim.
          -> {0, 1 exists / 0}. Writes mark:<id> 'void'.
]]

local function fn_unbind(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SPECIALIST_NOT_FOUND)
  if refused then return refused end
  local id = ARGV[4]
  if spec_get(id) then
    if ARGV[6] == '1' then return {0, 'taken'} end
    return refuse(E.TYPE_MISMATCH, TYPE)
  end
  rcall('SET', P .. K.moved .. id, ARGV[5])
  local perf = rcall('HMGET', P .. K.perf .. id, 'n', 'ok', 'q', 't', 'w')
  if not perf[1] then return {0, 'perf', ''} end
  local window = perf[5] or ''
  if window == '' then window = '-' end
  return {0, 'perf', perf[1] .. ' ' .. (perf[2] or '0') .. ' ' .. (perf[3] or '0') .. ' '
    .. (perf[4] or '0') .. ' ' .. window}
end

local function fn_void(KEYS, ARGV)
  local refused = begin(KEYS, ARGV, E.SUBTASK_NOT_FOUND)
  if refused then return refused end
  local id = ARGV[4]
  local mark = rcall('GET', P .. K.mark .. id)
  if rcall('EXISTS', P .. K.subtask .. id) == 1 or (mark and mark ~= 'void') then return {0, 1} end
  rcall('SET', P .. K.mark .. id, 'void')
  return {0, 0}
end
