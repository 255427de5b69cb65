-- What a reader of the audience index asks before each query, in one call on a single server
-- (a cluster's keys lie in many slots: there, a pipeline asks each shard).
-- KEYS: the shards' generations (S keys), then their withdrawal marks (S keys), then the
--       rebuild epoch.
-- Returns {generations..., epoch, marks...} (a missing generation or epoch as 0).
local s = (#KEYS - 1) / 2
local out = {}
for i = 1, s do out[i] = tonumber(redis.call('GET', KEYS[i]) or '0') end
out[s + 1] = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
for i = s + 1, 2 * s do
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[i])) do out[#out + 1] = m end
end
return out
