-- The further steps of a withdrawal's deletion (purge_lib.lua): KEYS[1] the subject's index;
-- ARGV 1 the withdrawn purposes (space-separated), 2 the rank to start at, 3 the step.
-- Returns {next rank (-1: done), purpose, entries deleted, ...}.
local counts, following = purge(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
local answer = {following}
for purpose in string.gmatch(ARGV[1], '%S+') do
  answer[#answer + 1] = purpose
  answer[#answer + 1] = counts[purpose]
end
return answer
