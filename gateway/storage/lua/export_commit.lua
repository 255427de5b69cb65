-- The end of an export, in one step: its staged people counted against its recipient's
-- ceiling for the year. Below it, the new ones join the year's set and the export is appended
-- to the audit log; at or over it, nothing joins and the refusal is appended. The staged set
-- goes either way. (So two exports to one recipient at once cannot both pass on the same
-- room, and no export is counted without its audit entry, nor audited without being counted.)
-- KEYS: 1 the recipient's people this year, 2 the export's staged people, 3 the audit log.
-- ARGV: 1 the ceiling (the year's people stay below it), 2 when the year's set lapses (ms),
--       3 the file's SHA-256, 4 the oldest audit entry id kept, 5... the audit entry's
--       field/value pairs.
-- Returns {outcome ('exported' or 'ceiling'), new people, the year's people with them, the
-- audit entry's id}.
local people = redis.call('SCARD', KEYS[2])
local before = redis.call('SCARD', KEYS[1])
local known = 0
if people > 0 and before > 0 then known = redis.call('SINTERCARD', 2, KEYS[2], KEYS[1]) end
local new = people - known
local after = before + new
local entry = {}
for i = 5, #ARGV do entry[#entry + 1] = ARGV[i] end
local outcome = 'exported'
if after >= tonumber(ARGV[1]) then
  outcome = 'ceiling'
  for _, v in ipairs({'outcome', 'refused', 'reason', 'ceiling'}) do entry[#entry + 1] = v end
else
  if new > 0 then redis.call('SUNIONSTORE', KEYS[1], KEYS[1], KEYS[2]) end
  if after > 0 then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
  for _, v in ipairs({'outcome', 'exported', 'sha256', ARGV[3]}) do entry[#entry + 1] = v end
end
for _, v in ipairs({'new_people', tostring(new), 'year_people', tostring(after)}) do
  entry[#entry + 1] = v
end
redis.call('DEL', KEYS[2])
local id = redis.call('XADD', KEYS[3], 'MINID', ARGV[4], '*', unpack(entry))
return {outcome, new, after, id}
