-- The end of an API key's audience query, in one step: the budget spent, the answer kept for
-- the day, the query added to the recent ones, the audit entry appended, the lock released.
-- A refusal uses it too (no spending, no answer: the audit entry and the release only).
-- KEYS: 1 the key's lock, 2 the answers given today to the question (true counts -> answer),
--       3 the recent queries, 4 the month's budget record, 5 the audit log, 6 the key's own
--       latest audit entries (the marketers' dashboard shows them).
-- ARGV: 1 the lock holder's token ('' : none held), 2 ε to spend ('0': none), 3 the monthly
--       budget, 4 how long (s) to keep the budget record, 5 the answer to keep ('': none),
--       6 how long (s) to keep it, 7 the query for the recent list ('': none), 8 how many
--       recent queries to keep, 9 how long (s) to keep them, 10 the audit entry ('': none),
--       11 the oldest audit entry id to keep, 12 the true counts the answer is for, 13 the
--       recent query's own part ('<query>\t'): earlier entries of the same query go.
-- Returns {'ok', spent}, or {'twin', answer} (an answer was kept already: nothing spent or
-- written, the caller audits), or {'budget', spent} (not enough left: nothing spent or
-- written), spent being the ε spent this month afterwards.
local function release()
  if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
end
local spent = tonumber(redis.call('GET', KEYS[4]) or '0')
if ARGV[5] ~= '' then
  local kept = redis.call('HGET', KEYS[2], ARGV[12])
  if kept then release() return {'twin', kept} end
end
local eps = tonumber(ARGV[2])
if eps > 0 then
  if spent + eps > tonumber(ARGV[3]) + 1e-9 then release() return {'budget', tostring(spent)} end
  spent = tonumber(redis.call('INCRBYFLOAT', KEYS[4], ARGV[2]))
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[12], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
if ARGV[7] ~= '' then
  -- the query once, with its latest count: entries are '<query>\t<count>'
  for _, kept in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    if kept:sub(1, #ARGV[13]) == ARGV[13] or kept .. '\t' == ARGV[13] then
      redis.call('LREM', KEYS[3], 0, kept)
    end
  end
  redis.call('LPUSH', KEYS[3], ARGV[7])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[8]) - 1)
  redis.call('EXPIRE', KEYS[3], ARGV[9])
end
if ARGV[10] ~= '' then
  redis.call('XADD', KEYS[5], 'MINID', '~', ARGV[11], '*', 'e', ARGV[10])
  redis.call('LPUSH', KEYS[6], ARGV[10])
  redis.call('LTRIM', KEYS[6], 0, 19)
  redis.call('EXPIRE', KEYS[6], 40 * 86400)
end
release()
return {'ok', tostring(spent)}
