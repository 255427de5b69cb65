-- A subject's own link key deleted only if it still names this account (compare and delete),
-- and the audience index told.
-- KEYS: the subject's account key, its group's audience change stream.
-- ARGV: 1 the account's hash, 2 the subject. Returns 1 if deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'k', 'u', 'sid', ARGV[2], 'a', ARGV[1])
  return redis.call('DEL', KEYS[1])
end
return 0
