-- A subject joins an account's set, on the account's slot.
-- KEYS: the account's subjects (sorted set: sid -> when its link ends, ms), its traits (hash).
-- ARGV: 1 sid, 2 how long (ms) the link lives.
-- Links that ended are dropped; the set and the traits live as long as the newest link, so
-- traits never outlive every link. Returns the number of subjects linked now.
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ends = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], ends, ARGV[1])
local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIREAT', KEYS[1], last)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIREAT', KEYS[2], last) end
return redis.call('ZCARD', KEYS[1])
