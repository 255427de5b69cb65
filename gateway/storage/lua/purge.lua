-- The further steps of a withdrawal's deletion (purge_lib.lua).
-- KEYS: 1 the subject's index, 2 its slot group's pending purges.
-- ARGV: 1 the subject, 2 the record's name (its withdrawal's time, ms), 3 the step, 4 "" for
--       the gateway carrying on its own withdrawal, or a time in ms: a sweep's claim, taken
--       only when the record's latest step is at least that old (its gateway died), and then
--       the sweep's own.
-- Returns {next rank (-1: done; -2: nothing done, the record is gone; -3: nothing done, the
-- record's latest step is recent), purpose, entries deleted, ...}; with -2, the name of the
-- subject's record named later, if there is one: a later withdrawal took this one into it,
-- and the withdrawal's gateway carries on with that one rather than answer before its data
-- went (the record's cursor is safe to share).
-- Each step works from the record as it is now, from the rank it holds: a new grant of one of
-- its purposes since bounded that purpose (purge_lib.lua), a later withdrawal of the subject
-- took the record into its own (a new record, from rank 0: this one is gone and its steps
-- stop), an erasure took it away. The last step removes it; each other moves its rank on and
-- renews its score, so that a purge in progress is never taken over.
local record, later
for _, r in ipairs(pending_of(KEYS[2], ARGV[1])) do
  if r.at == ARGV[2] then record = r end
  if tonumber(r.at) > tonumber(ARGV[2]) then later = r.at end
end
if not record then return {-2, later} end
local now = clock()
-- A sweep leaves a record whose latest step is recent. One stamped well ahead of the clock
-- (the store's clock stepped back, a failover to a replica whose clock is behind) is not
-- recent: it would wait out the whole offset.
local stall, score = tonumber(ARGV[4]), tonumber(record.score)
if stall and score > now - stall and score <= now + stall then return {-3} end
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
