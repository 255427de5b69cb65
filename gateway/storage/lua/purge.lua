-- The further steps of a withdrawal's deletion (purge_lib.lua).
-- KEYS: 1 the subject's index, 2 its slot group's pending purges (a zset: member
--       "<subject> <withdrawal time> <purposes, space-separated>", scored by the time of its
--       latest step, the store's clock).
-- ARGV: 1 the withdrawn purposes (space-separated), 2 the rank to start at, 3 the step, 4 the
--       pending member, 5 "" for the gateway carrying on its own withdrawal, or a time in ms:
--       a sweep's claim, taken only when the member's latest step is at least that old (its
--       gateway died), and then the sweep's own.
-- Returns {next rank (-1: done; -2: nothing done, the record is gone; -3: nothing done, the
-- record's latest step is recent), purpose, entries deleted, ...}.
-- Every step needs the record: it goes with the last step, and with an erasure, a new grant
-- of one of its purposes (what that grant stores is not the purge's to delete) or another
-- withdrawal of the subject (consent.lua merges them into one, from rank 0 again). Each other
-- step renews its score, so that a purge in progress is never taken over.
local at = redis.call('ZSCORE', KEYS[2], ARGV[4])
if not at then return {-2} end
local now = clock()
if ARGV[5] ~= '' and tonumber(at) > now - tonumber(ARGV[5]) then return {-3} end
local counts, following = purge(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
if following < 0 then
  redis.call('ZREM', KEYS[2], ARGV[4])
else
  redis.call('ZADD', KEYS[2], 'XX', now, ARGV[4])
end
local answer = {following}
for purpose in string.gmatch(ARGV[1], '%S+') do
  answer[#answer + 1] = purpose
  answer[#answer + 1] = counts[purpose]
end
return answer
