-- Claim every erasure counted so far for the rewrite about to be sent.
-- KEYS: the compaction state hash. ARGV: now (ms), the rewrites each node had begun (JSON).
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
redis.call('HSET', KEYS[1], 'claimed', seq, 'claimed_ms', ARGV[1], 'rewrites_before', ARGV[2])
redis.call('HDEL', KEYS[1], 'since')
return seq
