-- An account's traits set and removed, on the account's slot, only while a subject is linked
-- to it: traits of nobody are never kept. They live as long as the newest link.
-- KEYS: the account's subjects (sorted set), its traits (hash).
-- ARGV: 1 how many field/value pairs follow to set, then those pairs, then fields to remove.
-- Returns {'none'} when no subject is linked, else {'ok', field, value, ...} (all traits).
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #newest == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'none'}
end
local n = tonumber(ARGV[1])
for i = 0, n - 1 do redis.call('HSET', KEYS[2], ARGV[2 + 2 * i], ARGV[3 + 2 * i]) end
for i = 2 + 2 * n, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIREAT', KEYS[2], tonumber(newest[2])) end
local out = redis.call('HGETALL', KEYS[2])
table.insert(out, 1, 'ok')
return out
