-- After an erasure's own step: count it, and note (by the store's clock) when the first
-- erasure no AOF rewrite has claimed yet happened. KEYS: the compaction state hash.
local t = redis.call('TIME')
redis.call('HSETNX', KEYS[1], 'since', t[1] .. string.format('%03d', math.floor(t[2] / 1000)))
return redis.call('HINCRBY', KEYS[1], 'seq', 1)
