-- A subject's own link key set to an account, and the audience index told (the account it
-- leaves, if another, too).
-- KEYS: the subject's account key, its group's audience change stream.
-- ARGV: 1 the account's hash, 2 the subject, 3 how long (ms) the link lives.
-- Returns the account it was linked to before (or false).
local before = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3], 'GET')
local entry = {'k', 'l', 'sid', ARGV[2], 'a', ARGV[1]}
if before and before ~= ARGV[1] then
  entry[#entry + 1] = 'b'
  entry[#entry + 1] = before
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', unpack(entry))
return before
