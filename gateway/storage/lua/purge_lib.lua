-- A withdrawal's deletion, in bounded steps, and the record that keeps it going.
--
-- A step (PURGE_STEP refs of the subject's index at most, so that no subject, however much it
-- stored, holds the server for long): the refs of ranks start .. start + step - 1 that name a
-- purpose of the purge are deleted with the stream entries they point at. Returns the entries
-- deleted per purpose, and the rank the next step starts at (-1: the index is read to its
-- end). consent.lua runs the first step with the ledger entry, purge.lua the others (and those
-- a sweep finishes for a gateway that died between steps). The rank is a cursor that refs
-- added meanwhile never move back (a ref goes in by its time, at worst before the cursor:
-- read twice) and only another cursor's deletions could move forward: so a subject has one
-- purge at a time (consent.lua merges a new withdrawal's with the pending one), and its
-- cursor is kept in its record, whoever takes the next step (its gateway or a sweep).
--
-- A purge still pending is recorded in its group's `purges` zset, scored by the time of its
-- latest step (the store's clock): member "<subject> <name> <rank> <purposes>", the name the
-- withdrawal's time in ms (made later than a record it replaces), each purpose
-- "<name>" (all its refs go) or "<name><=<stream id>" when the subject granted it again while
-- the purge was pending: then only refs of entries up to that id go, the newest of the
-- purpose's stream at the grant (ids only grow, whatever the clock does), and what the grant
-- stores afterwards stays.

local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return {tonumber(ms) or 0, tonumber(seq) or 0}
end

-- purposes text -> {name = true | {ms, seq}}, names in order
local function purposes_of(text)
  local wanted, order = {}, {}
  for item in string.gmatch(text, '%S+') do
    local name, bound = string.match(item, '^(.-)<=(%d+%-%d+)$')
    if name then
      wanted[name] = id_parts(bound)
    else
      name = item
      wanted[name] = true
    end
    order[#order + 1] = name
  end
  return wanted, order
end

local function purge(index, wanted, start, step)
  local counts = {}
  for name in pairs(wanted) do counts[name] = 0 end
  local refs = redis.call('ZRANGE', index, start, start + step - 1)
  local gone = {}
  for _, ref in ipairs(refs) do
    local _, _, purpose, key, id = string.find(ref, '^(%S+) (%S+) (%S+)$')
    local bound = purpose and wanted[purpose]
    local take = bound == true
    if bound and bound ~= true then
      local at = id_parts(id)
      take = at[1] < bound[1] or (at[1] == bound[1] and at[2] <= bound[2])
    end
    if take then
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

-- A subject's pending purges (normally none, at most one):
-- {member =, score =, at =, rank =, items = {...}} each.
local function pending_of(purges, subject)
  local mine, found = subject .. ' ', {}
  local all = redis.call('ZRANGE', purges, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local member = all[i]
    local at, rank, text = string.match(member, '^%S+ (%d+) (%d+) (%S.*)$')
    -- (one it cannot read is not its; nor one whose numbers a double cannot hold exactly)
    if at and #at <= 15 and #rank <= 15 and string.sub(member, 1, #mine) == mine then
      local items = {}
      for item in string.gmatch(text or '', '%S+') do items[#items + 1] = item end
      found[#found + 1] = {
        member = member, score = all[i + 1], at = at, rank = tonumber(rank), items = items
      }
    end
  end
  return found
end

local function record_name(subject, at, rank, items)
  return subject .. ' ' .. at .. ' ' .. rank .. ' ' .. table.concat(items, ' ')
end
