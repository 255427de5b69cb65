-- Tokens from several buckets of one client address (hashes: ``t`` tokens, ``s`` stamp;
-- all with the address's tag, so one slot), all or none; each expires once full again.
-- ARGV: per bucket its burst, refill per hour and cost.
-- Returns 0, or {the refusing bucket's position, ms to wait}.

local now = clock()
local after = {}
for k = 1, #KEYS do
  local burst, per_hour, cost = tonumber(ARGV[3 * k - 2]), tonumber(ARGV[3 * k - 1]),
    tonumber(ARGV[3 * k])
  local b = redis.call('HMGET', KEYS[k], 't', 's')
  local t = refill(b[1], b[2], burst, per_hour, now)
  if t < cost then return {k, wait(t, cost, per_hour)} end
  after[k] = {t - cost, math.ceil((burst - t + cost) * 3600000 / per_hour) + 1000}
end
for k = 1, #KEYS do
  redis.call('HSET', KEYS[k], 't', string.format('%.4f', after[k][1]), 's', now)
  redis.call('PEXPIRE', KEYS[k], after[k][2])
end
return 0
