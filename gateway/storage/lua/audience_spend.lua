-- Spend from an API key's monthly privacy budget, if enough is left.
-- KEYS: the key's budget for the month (a float: spent so far).
-- ARGV: 1 epsilon, 2 the budget, 3 how long (s) to keep the record.
-- Returns what is left afterwards (as a string), or false (nothing spent).
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local eps = tonumber(ARGV[1])
if spent + eps > tonumber(ARGV[2]) + 1e-9 then return false end
local now = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return tostring(tonumber(ARGV[2]) - tonumber(now))
