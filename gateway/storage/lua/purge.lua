-- The further steps of a withdrawal's deletion (purge_lib.lua).
-- KEYS: 1 the subject's index, 2 its slot group's pending purges.
-- ARGV: 1 the subject, 2 the record's name (its withdrawal's time, ms), 3 the step, 4 "" for
--       the gateway carrying on its own withdrawal, or a time in ms: a sweep's claim, taken
--       only when the record's latest step is at least that old (its gateway died), and then
--       the sweep's own.
-- Returns {next rank (-1: done; -2: nothing done, the record is gone; -3: nothing done, the
-- record's latest step is recent), purpose, entries deleted, ...}.
-- Each step works from the record as it is now, from the rank it holds: a new grant of one of
-- its purposes since bounded that purpose (purge_lib.lua), a later withdrawal of the subject
-- took the record into its own (a new record, from rank 0: this one is gone and its steps
-- stop), an erasure took it away. The last step removes it; each other moves its rank on and
-- renews its score, so that a purge in progress is never taken over.
local record
for _, r in ipairs(pending_of(KEYS[2], ARGV[1])) do
  if r.at == ARGV[2] then record = r end
end
if not record then return {-2} end
local now = clock()
if ARGV[4] ~= '' and tonumber(record.score) > now - tonumber(ARGV[4]) then return {-3} end
local wanted, order = purposes_of(table.concat(record.items, ' '))
local counts, following = purge(KEYS[1], wanted, record.rank, tonumber(ARGV[3]))
redis.call('ZREM', KEYS[2], record.member)
if following >= 0 then
  redis.call('ZADD', KEYS[2], now, record_name(ARGV[1], record.at, following, record.items))
end
local answer = {following}
for _, name in ipairs(order) do
  answer[#answer + 1] = name
  answer[#answer + 1] = counts[name]
end
return answer
