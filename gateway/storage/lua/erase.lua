-- Everything of one subject deleted from its slot group, atomically: the stream entries its
-- index points at, then its consent state, ledger, dedup ids, index and the sets listing its
-- saved logins and SMS keys. (No write can slip between reading the index and deleting: the
-- script is one step, and with the consent state gone nothing is granted afterwards.)
-- The audience index is told, and until it has folded the news a mark takes the subject's
-- person (by its number, which is forgotten now) and its account's out of every count.
-- KEYS: consent, ledger, dedup, index, logins set, sms set, account (all with the subject's
--       tag; deleted), then the audience index's change stream, marks and person numbers,
--       then the group's pending purges (a purge of the subject left there has nothing left
--       to do, and its record names the subject), then its event writes' attempts (deleted,
--       not counted: random names, which would go within the hour by themselves).
-- ARGV: 1 the subject, 2 the account it was linked to ("" if none).
-- Returns {entries removed, keys removed, whether a consent state was kept, the ledger's
-- entries, the event ids remembered, whether the audience index was told to take the
-- subject's person (its own, or its account's) out of every count}
-- (the last four for the erasure's receipt).
local had_state = redis.call('EXISTS', KEYS[1])
local ledger_entries = redis.call('LLEN', KEYS[2])
local event_ids = redis.call('ZCARD', KEYS[3])
local refs = redis.call('ZRANGE', KEYS[4], 0, -1)
local removed = 0
for _, ref in ipairs(refs) do
  local _, _, key, id = string.find(ref, '^%S+ (%S+) (%S+)$')
  if key then removed = removed + redis.call('XDEL', key, id) end
end
local keys = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('DEL', KEYS[12])
local own = 's:' .. ARGV[1]
-- The index's news of the subject not read yet (consent changes, links name it), and its own
-- withdrawal marks, go too: the change stream holds what the indexer has not read (a second
-- of changes while it runs, at most 100,000 entries when none does).
local gone = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[8], '-', '+')) do
  local fields = entry[2]
  local mine, account = false, nil
  for i = 1, #fields, 2 do
    if fields[i] == 'sid' and fields[i + 1] == ARGV[1] then mine = true end
    if fields[i] == 'a' then account = fields[i + 1] end
  end
  if mine then
    redis.call('XDEL', KEYS[8], entry[1])
    gone[entry[1]] = true
    -- what it said of an account still has to reach the index: said again without the id
    if account then
      redis.call('XADD', KEYS[8], 'MAXLEN', '~', 100000, '*', 'k', 't', 'a', account)
    end
  end
end
-- the marks those entries left (a withdrawal's, naming the subject or its account)
for _, mark in ipairs(redis.call('SMEMBERS', KEYS[9])) do
  local id = string.match(mark, '|([^|]+)$')
  if id and gone[id] then redis.call('SREM', KEYS[9], mark) end
end
local prefix = own .. '|'
for _, mark in ipairs(redis.call('SMEMBERS', KEYS[9])) do
  if string.sub(mark, 1, #prefix) == prefix then redis.call('SREM', KEYS[9], mark) end
end
local number = redis.call('HGET', KEYS[10], own)
if number or ARGV[2] ~= '' then
  local entry = {'k', 'e'}  -- not the subject's id: it is erased
  if number then
    entry[#entry + 1] = 'p'
    entry[#entry + 1] = number
  end
  if ARGV[2] ~= '' then
    entry[#entry + 1] = 'a'
    entry[#entry + 1] = ARGV[2]
  end
  local id = redis.call('XADD', KEYS[8], 'MAXLEN', '~', 100000, '*', unpack(entry))
  if number then redis.call('SADD', KEYS[9], '#' .. number .. '|' .. id) end
  if ARGV[2] ~= '' then redis.call('SADD', KEYS[9], 'a:' .. ARGV[2] .. '|' .. id) end
  redis.call('HDEL', KEYS[10], own)
end
local mine = ARGV[1] .. ' '
for _, member in ipairs(redis.call('ZRANGE', KEYS[11], 0, -1)) do
  if string.sub(member, 1, #mine) == mine then redis.call('ZREM', KEYS[11], member) end
end
local told = (number or ARGV[2] ~= '') and 1 or 0
return {removed, keys, had_state, ledger_entries, event_ids, told}
