-- A withdrawal's deletion, one bounded step (PURGE_STEP refs of the subject's index at most, so
-- that no subject, however much it stored, holds the server for long): the refs of ranks
-- start .. start + step - 1 that name a withdrawn purpose are deleted with the stream entries
-- they point at. Returns the entries deleted per purpose, and the rank the next step starts at
-- (-1: the index is read to its end). Shared by consent.lua (the first step, with the ledger
-- entry) and purge.lua (the others, and those a sweep finishes for a gateway that died
-- between steps). The rank is a cursor that refs added meanwhile never move back (a ref goes
-- in by its time, at worst before the cursor: read twice) and that only the subject's other
-- purges could move forward: consent.lua merges those into one (the pending ones below).
local function purge(index, purposes, start, step)
  local wanted, counts = {}, {}
  for p in string.gmatch(purposes, '%S+') do
    wanted[p] = true
    counts[p] = 0
  end
  local refs = redis.call('ZRANGE', index, start, start + step - 1)
  local gone = {}
  for _, ref in ipairs(refs) do
    local _, _, purpose, key, id = string.find(ref, '^(%S+) (%S+) (%S+)$')
    if purpose and wanted[purpose] then
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

-- A subject's pending purges (its group's `purges` zset, members "<subject> <withdrawal ms>
-- <purposes>"; normally none): {member, score, {purpose, ...}} each.
local function pending_of(purges, subject)
  local mine, found = subject .. ' ', {}
  local all = redis.call('ZRANGE', purges, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local member = all[i]
    if string.sub(member, 1, #mine) == mine then
      local purposes = {}
      for p in string.gmatch(string.match(member, '^%S+ %S+ (.*)$') or '', '%S+') do
        purposes[#purposes + 1] = p
      end
      found[#found + 1] = {member, all[i + 1], purposes}
    end
  end
  return found
end
