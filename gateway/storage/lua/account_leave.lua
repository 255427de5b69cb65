-- A subject leaves an account's set, on the account's slot; an account left with no subject
-- loses its traits in the same step (no link can slip in between).
-- KEYS: the account's subjects (sorted set), its traits (hash). ARGV: 1 sid.
-- Returns 1 if the subject was linked (and its link had not ended), else 0.
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local was = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return was
