-- One ledger entry appended and the consent state changed, atomically.
-- KEYS: consent hash, ledger list, index zset (its refs of withdrawn purposes go), the audience
--       index's change stream and withdrawal marks, the subject's account key, the group's
--       pending purges (purge.lua), then the suppression sets the subject joins (scored by
--       now), then those it leaves. All carry the subject's slot group's tag (keys.py).
-- ARGV: 1 expected head, 2 receipt id, 3 new head hash, 4 the entry (JSON), 5 subject,
--       6 ledger bucket burst (0: no limit), 7 its refill per hour, 8 how long (ms) to keep a
--       subject that holds or may hold data, 9 how long to keep one that does not, 10 "1"
--       when the new state grants an optional purpose, 11 how long (ms) suppression-list
--       entries are kept, 12 how many sets are joined, 13 the audience index's news: "" (the
--       counted purpose is not decided here), "in" (granted), "out" (withdrawn: a mark names
--       the person, the subject or its account, so that no count includes it from now on,
--       audiences/view.py), 14 the purposes withdrawn here whose data goes (space-separated,
--       "" for none), 15 "1" when one of them is a purpose the audience index reads events
--       of (it is told to forget what it derived from the subject's events), 16 the purge's
--       step (purge_lib.lua), 17 the name of the subject's group's streams less the purpose
--       (a purpose granted while a purge of it is pending: its stream's newest id bounds the
--       purge), then the state hash's field/value pairs.
-- Lifetimes only ever grow: a withdrawal keeps the proof of the grant it ends as long as data
-- collected under that grant may be kept.
-- Returns {'dup', n} (this receipt was written already: a retry after a lost reply; the
-- receipt is written again, a no-op that makes the WAIT/WAITAOF which follow on this
-- connection cover the first write too, since a replica takes writes in order),
-- {'conflict', head}, {'limited', ms to wait}, or {'ok', n, next, member, purpose, removed,
-- ...}: n is the entry's position, next the index rank purge.lua goes on from (-1: done;
-- otherwise the purge is recorded among the group's pending ones as member, so that a sweep
-- finishes it if the gateway dies before it does), then for each purpose purged the stream
-- entries of the subject's parts deleted with it (PIPL art. 47: withdrawing consent deletes
-- what was kept under it): those withdrawn here, and those of the subject's pending purge
-- taken into this one. The subject's index names every entry holding its parts; all of them
-- carry its slot group's tag, so the deletion starts in this one step (and for a subject that
-- stored more, goes on in the steps after it, before the answer, or by a sweep if the gateway
-- dies meanwhile): no event of the purpose is stored after the withdrawal (events.lua checks
-- the grant in its own step), none stored before it stays.

local st = redis.call('HMGET', KEYS[1], 'head', 'receipt', 'n', 'lt', 'ls')
if st[2] == ARGV[2] then
  redis.call('HSET', KEYS[1], 'receipt', ARGV[2])
  return {'dup', st[3] or '0'}
end
local head = st[1] or ''
if head ~= ARGV[1] then return {'conflict', head} end
local now = clock()
local burst = tonumber(ARGV[6])
local state = {}
if burst > 0 then
  local per_hour = tonumber(ARGV[7])
  local t = refill(st[4], st[5], burst, per_hour, now)
  if t < 1 then return {'limited', wait(t, 1, per_hour)} end
  state = {'lt', string.format('%.4f', t - 1), 'ls', now}
end
local n = (tonumber(st[3]) or 0) + 1
redis.call('RPUSH', KEYS[2], ARGV[4])
for _, v in ipairs({'head', ARGV[3], 'receipt', ARGV[2], 'n', n}) do state[#state + 1] = v end
for i = 18, #ARGV do state[#state + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(state))
local hold = ARGV[9]
if ARGV[10] == '1' or redis.call('EXISTS', KEYS[3]) == 1 then hold = ARGV[8] end
keep(KEYS[1], hold)
keep(KEYS[2], hold)
if ARGV[13] ~= '' then
  local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'k', 'c', 'sid', ARGV[5])
  if ARGV[13] == 'out' then
    local account = redis.call('GET', KEYS[6])
    local person = account and ('a:' .. account) or ('s:' .. ARGV[5])
    redis.call('SADD', KEYS[5], person .. '|' .. id)
  end
end
local joined = tonumber(ARGV[12])
for k = 8, 7 + joined do
  redis.call('ZADD', KEYS[k], now, ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', '(' .. (now - tonumber(ARGV[11])))
end
for k = 8 + joined, #KEYS do redis.call('ZREM', KEYS[k], ARGV[5]) end
local answer = {'ok', n}
-- The subject's pending purge (a withdrawal of one that stored more than a step; none in nearly
-- every call). A purpose granted here is bounded in it by its stream's newest id: the purge
-- still deletes what was stored before, and what the grant stores stays. A withdrawal here
-- takes it into its own purge, from rank 0, so that one cursor walks the index
-- (purge_lib.lua); its gateway's next step finds it gone and stops (purge.lua).
local pending = pending_of(KEYS[7], ARGV[5])
local granted = {}
if #pending > 0 then
  for i = 18, #ARGV - 1, 2 do
    local purpose = string.match(ARGV[i], '^g:(.+)$')
    if purpose and (tonumber(ARGV[i + 1]) or 0) > 0 then granted[purpose] = true end
  end
end
local function bounded(item)
  local name = string.match(item, '^(.-)<=') or item
  if granted[name] and name == item then
    local newest = redis.call('XREVRANGE', ARGV[17] .. name, '+', '-', 'COUNT', 1)
    return name, name .. '<=' .. (newest[1] and newest[1][1] or '0-0')
  end
  return name, item
end
local items, seen = {}, {}
for purpose in string.gmatch(ARGV[14], '%S+') do
  if not seen[purpose] then
    seen[purpose] = true
    items[#items + 1] = purpose  -- withdrawn here: all of it goes
  end
end
for _, record in ipairs(pending) do
  local kept, changed = {}, false
  for _, item in ipairs(record.items) do
    local name, now_item = bounded(item)
    changed = changed or now_item ~= item
    kept[#kept + 1] = now_item
    if ARGV[14] ~= '' and not seen[name] then
      seen[name] = true
      items[#items + 1] = now_item
    end
  end
  if ARGV[14] ~= '' then
    redis.call('ZREM', KEYS[7], record.member)
  elseif changed then
    redis.call('ZREM', KEYS[7], record.member)
    redis.call('ZADD', KEYS[7], record.score, record_name(ARGV[5], record.at, record.rank, kept))
  end
end
if #items > 0 then
  -- the first step's refs here; the rest (a subject that stored more) by purge.lua, in steps
  -- as bounded, before the answer: the grant is 0 from here on, nothing more is stored
  local text = table.concat(items, ' ')
  local wanted, order = purposes_of(text)
  local counts, following = purge(KEYS[3], wanted, 0, tonumber(ARGV[16]))
  local member = ''
  if following >= 0 then
    -- named later than a record it replaces (one of the same millisecond would take the
    -- replaced one's steps for its own)
    local at = now
    for _, record in ipairs(pending) do at = math.max(at, tonumber(record.at) + 1) end
    member = record_name(ARGV[5], string.format('%.0f', at), following, items)
    redis.call('ZADD', KEYS[7], now, member)
  end
  answer[3] = following
  answer[4] = member
  for _, purpose in ipairs(order) do
    answer[#answer + 1] = purpose
    answer[#answer + 1] = counts[purpose]
  end
  if ARGV[15] == '1' then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'k', 'w', 'sid', ARGV[5])
  end
end
return answer
