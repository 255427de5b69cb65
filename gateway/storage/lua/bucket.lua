-- Shared by the scripts (prepended to them): the store's clock, token buckets (rate
-- limits), and lifetimes that only grow.
--   refill(tokens, stamp, burst, per_hour, now): the tokens a bucket holds at ``now`` (ms)
--     from what it held at ``stamp``, ``per_hour`` flowing back up to ``burst``;
--   wait(t, cost, per_hour): the ms until ``cost`` tokens will be there;
--   keep(key, ms): a key's life is lengthened to ``ms``, never shortened.
-- A bucket kept in the subject's consent hash costs no key and no round trip of its own.

local function clock()  -- the store's own clock (ms): gateways' clocks may differ
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function refill(tokens, stamp, burst, per_hour, now)
  local t = tonumber(tokens) or burst
  local last = tonumber(stamp) or now
  if now > last then t = math.min(burst, t + (now - last) * per_hour / 3600000) end
  return t
end
local function wait(t, cost, per_hour)
  return math.ceil((cost - t) * 3600000 / per_hour)
end
local function keep(key, ms)  -- a key's life is lengthened, never shortened
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or ttl < tonumber(ms) then redis.call('PEXPIRE', key, ms) end
end
