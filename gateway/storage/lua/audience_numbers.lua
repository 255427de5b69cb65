-- Numbers for people of one shard of the audience index, made for those without one.
-- KEYS: the shard's person numbers (hash: person key -> number), its counter.
-- ARGV: 1 the shard's first number, 2 how many it has room for, then the person keys.
-- Returns the numbers, in order.
local out = {}
for i = 3, #ARGV do
  local n = redis.call('HGET', KEYS[1], ARGV[i])
  if not n then
    local local_n = redis.call('INCR', KEYS[2]) - 1
    if local_n >= tonumber(ARGV[2]) then return redis.error_reply('audience shard full') end
    n = tonumber(ARGV[1]) + local_n
    redis.call('HSET', KEYS[1], ARGV[i], n)
  end
  out[#out + 1] = tonumber(n)
end
return out
