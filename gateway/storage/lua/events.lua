-- Requests' events stored: each purpose's parts appended to its stream, if granted on the
-- ledger at that moment, with dedup by event id, all in one atomic step.
-- One call carries one request or a group of them (storage/group.py: requests that arrived
-- together in a gateway process, stored by one call and answered each with its own
-- result). Each request's keys and arguments follow the previous one's, laid out as below
-- (KEYS from k + 1, ARGV from a + 1); a request's P (its ARGV[a + 10]) says where it ends.
-- On a cluster every request of a call has its keys in the same slot group.
-- KEYS: consent hash, dedup zset, index zset, ledger list, one stream key per purpose
--       (position p: KEYS[k + 4 + p]), attempts zset; all carry the subject's slot group's
--       tag (keys.py).
-- ARGV: now (ms), dedup window (ms), index lifetime (ms), expected consent head prefix ("*":
--       the caller read the consent hash this request), flags ("t": drop dedup ids older
--       than the window, done now and then: "at least" the window; "m": every event id was
--       minted by the gateway, so none can be a retry and dedup is skipped; "r": see
--       below), subject id, the events bucket's burst (0: no limit) and refill per hour,
--       how long (ms) the consent state and ledger are kept once data is stored,
--       P (number of purposes), P purpose names, P smallest grants, P part counts, P JSON
--       arrays (each purpose's parts of every event, in event order), the events' bit masks
--       of the purposes they have parts for (one character each: "0" + mask), then the
--       event ids joined by newlines (one argument: 500 of them cost the client more to
--       send one by one than the script takes to split them; ids hold no whitespace), then
--       P contexts (each purpose's share of the request context, a JSON object, or ""),
--       then the attempt: a random name of the request ("" when its ids were minted).
-- Returns one answer per request, in order, each one of:
-- {"stale", <consent hash as field/value pairs>} when the consent changed since the
-- caller's hint, storing nothing; {"dup", positions} when events were seen before, storing
-- nothing (the caller sends the rest again without them: each purpose's parts travel as one
-- prebuilt array, since making a Lua string of every part costs Valkey more than the writes
-- themselves); {"limited", ms} when the subject's events bucket lacks a token for each
-- event to store, storing nothing; else {"ok", codes}: one integer per event, the bit mask
-- of the purposes stored (0: none was consented).
-- A request that stores something also remembers its attempt, scored by the store's clock,
-- in the subject's attempts set, which keeps the last hour's: a resend follows its lost reply
-- within the same request (seconds; a failover's at most). Kept in the dedup set for its day
-- instead, they cost a browser posting one event at a time 78 % more there. With flag "r" (the
-- call is sent again after its reply was lost on the wire), a remembered attempt means the
-- earlier one stored: the answer is then what it did (each id it stored holds this request's
-- time and its mask) and nothing more happens. Without it the earlier one stored nothing (it
-- did not run, or answered dup, stale or limited), and the request runs as a first one. (The
-- time alone cannot tell: two requests of a subject can share a millisecond and an id, and the
-- second one's new events were then answered unconsented and lost.) Calls with "m" are never
-- sent again: with no dedup, a second attempt could not know what the first stored.


local store_now  -- the store's clock, read once per call (bucket.lua's clock())
local function store_clock()
  if not store_now then store_now = clock() end
  return store_now
end

local function store(k, a)
  local now = tonumber(ARGV[a + 1])
  local window = tonumber(ARGV[a + 2])
  local flags = ARGV[a + 5]
  local dedup = not string.find(flags, 'm', 1, true)
  local retry = string.find(flags, 'r', 1, true)
  local burst = tonumber(ARGV[a + 7])
  local P = 10
  local np = tonumber(ARGV[a + P])
  local packed = ARGV[a + P + 1 + 4 * np]
  local ids = {}
  local n = 0
  for id in string.gmatch(ARGV[a + P + 2 + 4 * np], '[^\n]+') do
    n = n + 1
    ids[n] = id
  end
  local attempt, attempts = ARGV[a + 13 + 5 * np], KEYS[k + 5 + np]
  if dedup and string.find(flags, 't', 1, true) then
    -- An hour of slack: gateways' clocks may differ a little, ids are kept a window at least.
    local bound = (now - window - 3600000) * 64
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 2], '-inf', string.format('(%.0f', bound))
  end
  local seen = dedup and redis.call('ZMSCORE', KEYS[k + 2], unpack(ids)) or {}
  if retry and attempt ~= '' and redis.call('ZSCORE', attempts, attempt) then
    -- Sent again after a lost reply, and the first attempt stored: it ran atomically, and
    -- every id was new to it, so each one it stored holds this request's time and its mask.
    local codes = {}
    for j = 1, n do
      local score = seen[j] and tonumber(seen[j])
      codes[j] = (score and math.floor(score / 64) == now) and score % 64 or 0
    end
    return {'ok', codes}
  end
  local dups = {}
  for j = 1, n do
    if seen[j] then dups[#dups + 1] = j end
  end
  if #dups > 0 then return {'dup', dups} end
  local wanted = {'head', 'renew_at', 'et', 'es'}
  for p = 1, np do wanted[p + 4] = 'g:' .. ARGV[a + P + p] end
  local state = redis.call('HMGET', KEYS[k + 1], unpack(wanted))
  local expect = ARGV[a + 4]
  if expect ~= '*' and string.sub(state[1] or '', 1, #expect) ~= expect then
    return {'stale', redis.call('HGETALL', KEYS[k + 1])}
  end
  local okmask, bitv = 0, 1
  for p = 1, np do
    if (tonumber(state[p + 4] or '0') or 0) >= tonumber(ARGV[a + P + np + p]) then
      okmask = okmask + bitv
    end
    bitv = bitv * 2
  end
  local codes, fresh, scores = {}, {}, {}
  for j = 1, n do
    local c = bit.band(string.byte(packed, j) - 48, okmask)
    codes[j] = c
    if c > 0 then
      local score = scores[c]
      if not score then  -- one string per mask, not a number to format per event
        score = string.format('%.0f', now * 64 + c)
        scores[c] = score
      end
      fresh[#fresh + 1] = score
      fresh[#fresh + 1] = ids[j]
    end
  end
  if #fresh > 0 then
    local touched = {}
    if burst > 0 then
      local per_hour = tonumber(ARGV[a + 8])
      local cost = #fresh / 2
      local at = store_clock()
      local t = refill(state[3], state[4], burst, per_hour, at)
      if t < cost then return {'limited', wait(t, cost, per_hour)} end
      touched = {'et', string.format('%.4f', t - cost), 'es', at}
    end
    if dedup then
      if attempt ~= '' then
        -- by the store's clock: the hour is for the resend, not for gateways' clocks (one an
        -- hour ahead of another's trimmed its fresh attempts, found by review)
        local at = store_clock()
        redis.call('ZREMRANGEBYSCORE', attempts, '-inf', string.format('(%.0f', at - 3600000))
        redis.call('ZADD', attempts, at, attempt)
        redis.call('PEXPIRE', attempts, 3600000)
      end
      redis.call('ZADD', KEYS[k + 2], unpack(fresh))
      redis.call('PEXPIRE', KEYS[k + 2], window)
    end
    local refs = {}
    bitv = 1
    for p = 1, np do
      local count = tonumber(ARGV[a + P + 2 * np + p])
      if bit.band(okmask, bitv) > 0 and count > 0 then
        local entry = {'sid', ARGV[a + 6], 'n', count, 'events', ARGV[a + P + 3 * np + p]}
        local context = ARGV[a + P + 2 + 4 * np + p]
        if context ~= '' then
          entry[7] = 'context'
          entry[8] = context
        end
        local id = redis.call('XADD', KEYS[k + 4 + p], '*', unpack(entry))
        refs[#refs + 1] = now
        refs[#refs + 1] = ARGV[a + P + p] .. ' ' .. KEYS[k + 4 + p] .. ' ' .. id
      end
      bitv = bitv * 2
    end
    redis.call('ZADD', KEYS[k + 3], unpack(refs))
    -- Lifetimes are renewed once a window rather than on every write, with two windows of
    -- slack, so that the index outlives every entry it points to, and the consent state and
    -- ledger outlive the data stored under them by the proof period (ARGV[a + 9]).
    if (tonumber(state[2] or '0') or 0) <= now then
      redis.call('PEXPIRE', KEYS[k + 3], tonumber(ARGV[a + 3]) + 2 * window)
      keep(KEYS[k + 1], ARGV[a + 9])
      keep(KEYS[k + 4], ARGV[a + 9])
      touched[#touched + 1] = 'renew_at'
      touched[#touched + 1] = now + window
    end
    if #touched > 0 then redis.call('HSET', KEYS[k + 1], unpack(touched)) end
  end
  return {'ok', codes}
end

-- The call's layout is checked whole before anything is written: a request laid out wrong
-- would shift every one after it onto another's keys.
local starts, k, a = {}, 0, 0
while a < #ARGV do
  local np = tonumber(ARGV[a + 10] or '')
  if not np or np < 0 or np % 1 ~= 0 then
    return redis.error_reply('ERR events: request ' .. (#starts + 1) .. ' has no purpose count')
  end
  starts[#starts + 1] = {k, a}
  k = k + 5 + np
  a = a + 13 + 5 * np
end
if k ~= #KEYS or a ~= #ARGV then
  return redis.error_reply(string.format(
    'ERR events: layout ends at %d keys and %d arguments of %d and %d', k, a, #KEYS, #ARGV))
end
local answers = {}
for i = 1, #starts do
  answers[i] = store(starts[i][1], starts[i][2])
end
return answers
