-- Everything of one subject deleted from its slot group, atomically: the stream entries its
-- index points at, then its consent state, ledger, dedup ids, index and the sets listing its
-- saved logins and SMS keys. (No write can slip between reading the index and deleting: the
-- script is one step, and with the consent state gone nothing is granted afterwards.)
-- KEYS: consent, ledger, dedup, index, logins set, sms set, account (all with the subject's tag).
-- Returns {entries removed, keys removed}.
local refs = redis.call('ZRANGE', KEYS[4], 0, -1)
local removed = 0
for _, ref in ipairs(refs) do
  local _, _, key, id = string.find(ref, '^%S+ (%S+) (%S+)$')
  if key then removed = removed + redis.call('XDEL', key, id) end
end
local keys = redis.call('DEL', unpack(KEYS))
return {removed, keys}
