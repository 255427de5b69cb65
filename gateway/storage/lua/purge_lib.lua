-- A withdrawal's deletion, one bounded step (PURGE_STEP refs of the subject's index at most, so
-- that no subject, however much it stored, holds the server for long): the refs of ranks
-- start .. start + step - 1 that name a withdrawn purpose and an entry the store added at or
-- before `before` (the withdrawal's time on the store's clock, which stream ids carry too: a
-- step that runs later, after a new grant, leaves what that grant stored) are deleted with
-- the stream entries they point at. Returns the entries deleted per purpose, and the rank the
-- next step starts at (-1: the index is read to its end). Shared by consent.lua (the first step, with the ledger entry) and
-- purge.lua (the others, and those a sweep finishes for a gateway that died between steps).
local function purge(index, purposes, before, start, step)
  local wanted, counts = {}, {}
  for p in string.gmatch(purposes, '%S+') do
    wanted[p] = true
    counts[p] = 0
  end
  before = tonumber(before)
  local refs = redis.call('ZRANGE', index, start, start + step - 1)
  local gone = {}
  for _, ref in ipairs(refs) do
    local _, _, purpose, key, id = string.find(ref, '^(%S+) (%S+) (%S+)$')
    if purpose and wanted[purpose] and tonumber(string.match(id, '^%d+')) <= before then
      counts[purpose] = counts[purpose] + redis.call('XDEL', key, id)
      gone[#gone + 1] = ref
    end
  end
  for i = 1, #gone, 500 do
    redis.call('ZREM', index, unpack(gone, i, math.min(i + 499, #gone)))
  end
  local following = -1
  if #refs == step then following = start + step - #gone end
  return counts, following
end
