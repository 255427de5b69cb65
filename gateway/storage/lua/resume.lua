-- A saved login resumed: moved to its next generation, if the token presented is of the
-- current one, on the store's clock (the login ends at its expiry exactly).
-- KEYS: the login's record.
-- ARGV: the presented generation, the record's nonce as read when the token's mac was checked
--       (a record replaced since is another login), the account sealed under the newest key
--       ('' when it already is), the newest key's account hash ('' when the record has it).
-- Returns {'ok', generation, expires, the account hash it had}, {'reused'} (a genuine token
-- of an earlier generation: a copy), {'expired'} (and deleted) or {'unknown'}.
local rec = redis.call('HMGET', KEYS[1], 'gen', 'nonce', 'expires', 'acct')
if not rec[1] or rec[2] ~= ARGV[2] then return {'unknown'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(rec[3]) then
  redis.call('DEL', KEYS[1])
  return {'expired'}
end
local presented = tonumber(ARGV[1])
local current = tonumber(rec[1])
if presented < current then return {'reused'} end
if presented > current then return {'unknown'} end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'sealed', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'acct', ARGV[4]) end
return {'ok', tostring(gen), rec[3], rec[4]}
