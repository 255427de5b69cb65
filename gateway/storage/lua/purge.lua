-- The further steps of a withdrawal's deletion (purge_lib.lua).
-- KEYS: 1 the subject's index, 2 its slot group's pending purges (a zset: member
--       "<subject> <withdrawal time> <purposes, space-separated>", scored by the time of its
--       latest step).
-- ARGV: 1 the withdrawn purposes (space-separated), 2 the withdrawal's time (ms), 3 the rank
--       to start at, 4 the step, 5 the pending member, 6 "" for the gateway carrying on its own
--       withdrawal, or a time in ms: a sweep's claim, taken only when the member's latest step
--       is at least that old (its gateway died), and then the sweep's own.
-- Returns {next rank (-1: done; -2: not claimed, nothing done), purpose, entries deleted, ...}.
-- The member goes with the last step; each other step renews its score, so that a purge in
-- progress is never taken over.
local now = clock()
if ARGV[6] ~= '' then
  local at = redis.call('ZSCORE', KEYS[2], ARGV[5])
  if not at or tonumber(at) > now - tonumber(ARGV[6]) then return {-2} end
end
local counts, following = purge(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
if following < 0 then
  redis.call('ZREM', KEYS[2], ARGV[5])
else
  redis.call('ZADD', KEYS[2], 'XX', now, ARGV[5])
end
local answer = {following}
for purpose in string.gmatch(ARGV[1], '%S+') do
  answer[#answer + 1] = purpose
  answer[#answer + 1] = counts[purpose]
end
return answer
