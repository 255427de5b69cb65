-- A subject's own link key deleted only if it still names this account (compare and delete).
-- KEYS: the subject's account key. ARGV: 1 the account's hash. Returns 1 if deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
