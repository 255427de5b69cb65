-- A shard of the audience index saved: its changed bitmaps, each stamped with the shard's new
-- generation (readers fetch what changed after the generation they hold), and dropped ones.
-- KEYS: the shard's bitmaps (hash: name -> serialized), their generations (hash), its
--       generation (string).
-- ARGV: 1 how many are changed, then their names, then their bitmaps, then dropped names.
-- Returns the new generation.
local gen = redis.call('INCR', KEYS[3])
local n = tonumber(ARGV[1])
for i = 2, 1 + n do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + n])
  redis.call('HSET', KEYS[2], ARGV[i], gen)
end
for i = 2 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return gen
