-- A subject leaves an account's set, on the account's slot; an account left with no subject
-- loses its traits in the same step (no link can slip in between).
-- KEYS: the account's subjects (sorted set), its traits (hash). ARGV: 1 sid.
-- Returns {1 if the subject was linked (and its link had not ended) else 0, 1 if the
-- account's traits were deleted with its last subject else 0}.
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local was = redis.call('ZREM', KEYS[1], ARGV[1])
local traits = 0
if redis.call('ZCARD', KEYS[1]) == 0 then
  traits = redis.call('EXISTS', KEYS[2])
  redis.call('DEL', KEYS[1], KEYS[2])
end
return {was, traits}
