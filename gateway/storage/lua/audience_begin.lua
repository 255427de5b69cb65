-- The start of an API key's audience query: its lock taken, and what the query needs read
-- in the same step.
-- KEYS: 1 the key's lock, 2 the answers given today to the question (a hash: true counts ->
--       answer), 3 its recent released queries, 4 its budget record for the month (ε spent).
-- ARGV: 1 the holder's token, 2 how long (ms) the lock may be held (it lapses after a crash).
-- Returns false (another query of the key holds the lock), or {recent, spent, answers}.
-- A lock the same token holds already is taken again (the pair sent again after NOSCRIPT).
if redis.call('GET', KEYS[1]) ~= ARGV[1]
    and not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
return {
  redis.call('LRANGE', KEYS[3], 0, -1),
  redis.call('GET', KEYS[4]) or '0',
  redis.call('HGETALL', KEYS[2]),
}
