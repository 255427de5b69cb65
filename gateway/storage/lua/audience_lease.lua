-- The audience indexer's lease: taken when free, renewed by its holder.
-- KEYS: the lease. ARGV: 1 the candidate, 2 how long (ms).
-- Returns "new" (taken now), "kept" (renewed) or "" (another holds it).
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'kept'
end
if holder then return '' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'new'
