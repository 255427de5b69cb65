"""Redis storage: consent state, the hash-chained ledger, purpose streams, dedup, the index.

Keys (docs/protocol.md, "Storage layout"). Everything about one subject carries the hash tag
``{s:<id>}``:

* ``{s:<id>}:consent``  hash: ``g:<purpose>`` = 1 + index of the policy version a grant was
  given under, ``0`` when refused; ``v:``/``t:`` the version and time for display; the
  chain's head (``head``: the last entry's hash, ``n``: its length), ``receipt`` (the last
  receipt id, to recognise a retried write); ``renew_at``: when lifetimes are next renewed;
  the ``ledger_writes`` and ``events`` buckets (``lt``/``ls``, ``et``/``es``).
* ``{s:<id>}:ledger``   list: the consent ledger, oldest first, one JSON object an entry,
  each holding the previous entry's hash. (A list, not a stream: a stream preallocates about
  4 KB for its first entry, which made a visitor with one consent cost 4.8 KB; 0.9 KB now.)
  It expires with the consent hash (``Lifetimes``).
* ``{s:<id>}:dedup``    sorted set: event ids seen in the dedup window, scored
  ``time_ms * 64 + purposes stored`` (a bit mask).
* ``{s:<id>}:index``    sorted set: ``<purpose> <stream key> <entry id>`` of every entry.
* ``suppress:<channel>`` sorted set: subjects who left an advertising channel (or all
  advertising), scored by when (ms); written in the same step as the ledger entry.
* ``ev:{<purpose>:<shard>}`` streams, one family per purpose. One entry per request and
  purpose: ``sid``, ``n``, ``events``, a JSON array of the events' parts for that purpose
  (``event_id``, ``type``, ``ts`` and the event's own fields serving it, in their JSON
  types), and ``context`` when the request's context (IP, browser, device, place) has fields
  of that purpose: a JSON object that applies to every part of the entry (a part's own value
  of the same field wins; ``entry_events`` merges them). A request's 500 events cost Redis
  one append per purpose rather than one per event and purpose, and their shared context is
  stored once, which is what lets one Redis core take tens of thousands of events a second.

Every write is one Lua script, so a request stores all of its data or none of it, and the
consent check happens inside the same atomic step as the append ("consented on the ledger
at that moment"). The scripts touch keys of several hash slots, so this module targets a
single Redis or Valkey server; Redis Cluster needs the event scripts split per slot.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import msgspec
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry

log = logging.getLogger(__name__)

TRIM_DEDUP_SHARE = 1 / 16  # of event writes that also drop expired dedup ids
ANY_HEAD = "*"  # store_events: the caller read the consent state during this request
FLAGS = 4  # position of the flags in the event script's ARGV
DAY_MS = 86_400_000
READ_AHEAD = 4  # stream entries read per round trip when paging a subject's events
MAX_PURPOSES = 6  # bit masks of purposes travel in dedup scores: time_ms * 64 + mask
_MISSING: Any = object()
_decode_events = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

# Token buckets (rate limits) in Lua, shared by the scripts: ``refill`` gives the tokens a
# bucket holds at ``now`` (ms) from what it held at ``stamp``, ``per_hour`` flowing back up
# to ``burst``; ``wait`` the ms until ``cost`` tokens will be there. A bucket kept in the
# subject's consent hash costs no key and no round trip of its own.
_BUCKET_LUA = """
local function clock()  -- the store's own clock (ms): gateways' clocks may differ
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function refill(tokens, stamp, burst, per_hour, now)
  local t = tonumber(tokens) or burst
  local last = tonumber(stamp) or now
  if now > last then t = math.min(burst, t + (now - last) * per_hour / 3600000) end
  return t
end
local function wait(t, cost, per_hour)
  return math.ceil((cost - t) * 3600000 / per_hour)
end
local function keep(key, ms)  -- a key's life is lengthened, never shortened
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or ttl < tonumber(ms) then redis.call('PEXPIRE', key, ms) end
end
"""

# KEYS: consent hash, ledger list, index zset (only asked whether it exists), then the
# suppression sets the subject joins (scored by now), then those it leaves.
# ARGV: 1 expected head, 2 receipt id, 3 new head hash, 4 the entry (JSON), 5 subject,
#       6 ledger bucket burst (0: no limit), 7 its refill per hour, 8 how long (ms) to keep a
#       subject that holds or may hold data, 9 how long to keep one that does not, 10 "1"
#       when the new state grants an optional purpose, 11 how long (ms) suppression-list
#       entries are kept, 12 how many sets are joined, then the state hash's field/value
#       pairs.
# Lifetimes only ever grow: a withdrawal keeps the proof of the grant it ends as long as data
# collected under that grant may be kept.
# Returns {'dup', n} (this receipt was written already: a retry after a lost reply),
# {'conflict', head}, {'limited', ms to wait}, or {'ok', n}: n is the entry's position.
_CONSENT_LUA = (
    _BUCKET_LUA
    + """
local st = redis.call('HMGET', KEYS[1], 'head', 'receipt', 'n', 'lt', 'ls')
if st[2] == ARGV[2] then return {'dup', st[3] or '0'} end
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
for i = 13, #ARGV do state[#state + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(state))
local hold = ARGV[9]
if ARGV[10] == '1' or redis.call('EXISTS', KEYS[3]) == 1 then hold = ARGV[8] end
keep(KEYS[1], hold)
keep(KEYS[2], hold)
local joined = tonumber(ARGV[12])
for k = 4, 3 + joined do
  redis.call('ZADD', KEYS[k], now, ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', '(' .. (now - tonumber(ARGV[11])))
end
for k = 4 + joined, #KEYS do redis.call('ZREM', KEYS[k], ARGV[5]) end
return {'ok', n}
"""
)

# Tokens from several buckets of one client address (hashes ``t`` tokens, ``s`` stamp, all in
# one hash slot), all or none; each expires once full again. ARGV: per bucket its burst,
# refill per hour and cost. Returns 0, or {the refusing bucket's position, ms to wait}.
_TAKE_LUA = (
    _BUCKET_LUA
    + """
local now = clock()
local after = {}
for k = 1, #KEYS do
  local burst, per_hour, cost = tonumber(ARGV[3 * k - 2]), tonumber(ARGV[3 * k - 1]),
    tonumber(ARGV[3 * k])
  local b = redis.call('HMGET', KEYS[k], 't', 's')
  local t = refill(b[1], b[2], burst, per_hour, now)
  if t < cost then return {k, wait(t, cost, per_hour)} end
  after[k] = {t - cost, math.ceil((burst - t + cost) * 3600000 / per_hour) + 1000}
end
for k = 1, #KEYS do
  redis.call('HSET', KEYS[k], 't', string.format('%.4f', after[k][1]), 's', now)
  redis.call('PEXPIRE', KEYS[k], after[k][2])
end
return 0
"""
)

# KEYS: consent hash, dedup zset, index zset, ledger list, one stream key per purpose
#       (position p: KEYS[4+p]).
# ARGV: now (ms), dedup window (ms), index lifetime (ms), expected consent head prefix ("*":
#       the caller read the consent hash this request), flags ("t": drop dedup ids older
#       than the window, done now and then: "at least" the window; "m": every event id was
#       minted by the gateway, so none can be a retry and dedup is skipped; "r": see
#       below), subject id, the events bucket's burst (0: no limit) and refill per hour,
#       how long (ms) the consent state and ledger are kept once data is stored,
#       P (number of purposes), P purpose names, P smallest grants, P part counts, P JSON
#       arrays (each purpose's parts of every event, in event order), the events' bit masks
#       of the purposes they have parts for (one character each: "0" + mask), then the
#       event ids joined by newlines (one argument: 500 of them cost the client more to
#       send one by one than the script takes to split them; ids hold no whitespace), then
#       P contexts (each purpose's share of the request context, a JSON object, or "").
# Returns {"stale", <consent hash as field/value pairs>} when the consent changed since the
# caller's hint, storing nothing; {"dup", positions} when events were seen before, storing
# nothing (the caller sends the rest again without them: each purpose's parts travel as one
# prebuilt array, since making a Lua string of every part costs Valkey more than the writes
# themselves); {"limited", ms} when the subject's events bucket lacks a token for each
# event to store, storing nothing; else {"ok", codes}: one integer per event, the bit mask
# of the purposes stored (0: none was consented).
# With flag "r" (the call is sent again after its reply was lost on the wire), event ids
# remembered with this request's own time were stored by the earlier attempt: the answer is
# then what that attempt did, and nothing more happens. (Without "r" such an id is a
# duplicate: two different requests can share a millisecond.) Calls with "m" are never
# sent again: with no dedup, a second attempt could not know what the first stored.
_EVENTS_LUA = (
    _BUCKET_LUA
    + """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local flags = ARGV[5]
local dedup = not string.find(flags, 'm', 1, true)
local retry = string.find(flags, 'r', 1, true)
local burst = tonumber(ARGV[7])
local P = 10
local np = tonumber(ARGV[P])
local packed = ARGV[P + 1 + 4 * np]
local ids = {}
local n = 0
for id in string.gmatch(ARGV[P + 2 + 4 * np], '[^\\n]+') do
  n = n + 1
  ids[n] = id
end
if dedup and string.find(flags, 't', 1, true) then
  -- An hour of slack: gateways' clocks may differ a little, ids are kept a window at least.
  local bound = (now - window - 3600000) * 64
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%.0f', bound))
end
local seen = dedup and redis.call('ZMSCORE', KEYS[2], unpack(ids)) or {}
if retry then
  -- Sent again after a lost reply: if the first attempt stored anything, answer what it did
  -- (it ran atomically, so every event's fate then is in the dedup set) and stop here.
  local ran, codes = false, {}
  for j = 1, n do
    local score = seen[j] and tonumber(seen[j])
    if score and math.floor(score / 64) == now then
      ran = true
      codes[j] = score % 64
    else
      codes[j] = score and -1 or 0
    end
  end
  if ran then return {'ok', codes} end
end
local dups = {}
for j = 1, n do
  if seen[j] then dups[#dups + 1] = j end
end
if #dups > 0 then return {'dup', dups} end
local wanted = {'head', 'renew_at', 'et', 'es'}
for p = 1, np do wanted[p + 4] = 'g:' .. ARGV[P + p] end
local state = redis.call('HMGET', KEYS[1], unpack(wanted))
local expect = ARGV[4]
if expect ~= '*' and string.sub(state[1] or '', 1, #expect) ~= expect then
  return {'stale', redis.call('HGETALL', KEYS[1])}
end
local okmask, bitv = 0, 1
for p = 1, np do
  if (tonumber(state[p + 4] or '0') or 0) >= tonumber(ARGV[P + np + p]) then
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
    local per_hour = tonumber(ARGV[8])
    local cost = #fresh / 2
    local at = clock()
    local t = refill(state[3], state[4], burst, per_hour, at)
    if t < cost then return {'limited', wait(t, cost, per_hour)} end
    touched = {'et', string.format('%.4f', t - cost), 'es', at}
  end
  if dedup then
    redis.call('ZADD', KEYS[2], unpack(fresh))
    redis.call('PEXPIRE', KEYS[2], window)
  end
  local refs = {}
  bitv = 1
  for p = 1, np do
    local count = tonumber(ARGV[P + 2 * np + p])
    if bit.band(okmask, bitv) > 0 and count > 0 then
      local entry = {'sid', ARGV[6], 'n', count, 'events', ARGV[P + 3 * np + p]}
      local context = ARGV[P + 2 + 4 * np + p]
      if context ~= '' then
        entry[7] = 'context'
        entry[8] = context
      end
      local id = redis.call('XADD', KEYS[4 + p], '*', unpack(entry))
      refs[#refs + 1] = now
      refs[#refs + 1] = ARGV[P + p] .. ' ' .. KEYS[4 + p] .. ' ' .. id
    end
    bitv = bitv * 2
  end
  redis.call('ZADD', KEYS[3], unpack(refs))
  -- Lifetimes are renewed once a window rather than on every write, with two windows of
  -- slack, so that the index outlives every entry it points to, and the consent state and
  -- ledger outlive the data stored under them by the proof period (ARGV[9]).
  if (tonumber(state[2] or '0') or 0) <= now then
    redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[3]) + 2 * window)
    keep(KEYS[1], ARGV[9])
    keep(KEYS[4], ARGV[9])
    touched[#touched + 1] = 'renew_at'
    touched[#touched + 1] = now + window
  end
  if #touched > 0 then redis.call('HSET', KEYS[1], unpack(touched)) end
end
return {'ok', codes}
"""
)


class LedgerConflict(Exception):
    """Another consent write for the same subject landed first; re-read and try again."""

    def __init__(self, head: str) -> None:
        super().__init__(head)
        self.head = head


class OverLimit(Exception):
    """A rate limit's bucket lacks the tokens a write needs; nothing was written.

    ``limit`` names the bucket (``new_subjects``, ``ledger_writes``, ``events``) and
    ``wait_ms`` says when the tokens will be there."""

    def __init__(self, limit: str, wait_ms: int) -> None:
        super().__init__(f"{limit}: retry in {wait_ms} ms")
        self.limit = limit
        self.wait_ms = int(wait_ms)


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: ``burst`` tokens at most, ``per_hour`` flowing back."""

    burst: int
    per_hour: int


@dataclass(frozen=True, slots=True)
class Limits:
    """The rate limits the store enforces (``GATEWAY_RATE_LIMITS``; None: none)."""

    new_subjects: Bucket  # per client address (hashed), for subjects made
    ledger_writes: Bucket  # per subject, for consent API writes
    events: Bucket  # per subject, for events stored
    address_ledger_writes: Bucket  # per client address, for consent API writes of all subjects


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long a subject's consent state and ledger are kept after their last change.

    ``holding``: while it holds or may hold data (an optional purpose granted, or event parts
    indexed): the longest retention of any purpose plus the proof period, so the ledger
    proves every choice for as long as data collected under it exists, and then some.
    ``bare``: a subject that granted nothing optional and holds nothing."""

    holding_ms: int
    bare_ms: int
    suppression_ms: int  # entries of the senders' suppression lists


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """Entries ``first``... of a subject's ledger (decoded), the entry just before them (to
    check the link), how many entries it holds, and the head the consent state records."""

    entries: list[dict[str, str]]
    first: int
    before: dict[str, str] | None
    length: int
    head_length: int
    head_hash: str


class StaleConsent(Exception):
    """The consent changed since the caller's view of it; ``state`` is the consent hash now."""

    def __init__(self, state: dict[str, str]) -> None:
        super().__init__("the consent changed since the caller read it")
        self.state = state


def entry_events(fields: Mapping[str, str]) -> list[dict[str, Any]]:
    """The event parts one stream entry holds, each with the entry's context merged in."""
    events = _decode_events(fields.get("events", "[]"))
    if not isinstance(events, list):
        return []
    context = _decode_events(fields["context"]) if "context" in fields else None
    if not isinstance(context, dict) or not context:
        return events
    return [{**event, **{k: v for k, v in context.items() if k not in event}} for event in events]


def _ledger_entry(raw: str | None) -> dict[str, str] | None:
    """One ledger entry as the list holds it (a JSON object of strings), or None."""
    if raw is None:
        return None
    try:
        data = _decode_events(raw)
    except msgspec.DecodeError:
        return {}
    return data if isinstance(data, dict) else {}


class NotDurable(Exception):
    """The server did not confirm the fsync of a consent write in time."""


# One event's fields that serve one purpose, ready for its purpose's stream: the purpose, and
# a JSON object holding event_id, type, ts and those fields. A plain tuple: 1,000 are made
# for a 500-event batch, and a named tuple costs several times as much to make.
EventPart = tuple[str, bytes]


class Batch(NamedTuple):
    """Events' parts grouped by purpose, as the event script takes them (see _EVENTS_LUA)."""

    arrays: list[bytes]  # per purpose: a JSON array of its parts, in event order
    counts: list[int]  # per purpose: how many parts
    masks: bytes  # per event: "0" + the bit mask of the purposes it has parts for


@runtime_checkable
class Grouped(Protocol):
    """What ``store_events`` stores: event ids, the purposes they have parts for (sorted),
    and the parts grouped by purpose for any subset of the events (a resend leaves some
    out). ``split.Split`` builds the whole batch at once in the usual case."""

    ids: Sequence[str]
    purposes: list[str]

    def batch(self, pending: Sequence[int]) -> Batch: ...


class PartsByEvent:
    """``Grouped`` from each event's id and parts (``[(event_id, [(purpose, json)...])]``)."""

    def __init__(self, events: Sequence[tuple[str, Sequence[EventPart]]]) -> None:
        self.ids = [eid for eid, _ in events]
        self.parts = [parts for _, parts in events]
        self.purposes = sorted({purpose for parts in self.parts for purpose, _ in parts})

    def batch(self, pending: Sequence[int]) -> Batch:
        bit = {p: 1 << i for i, p in enumerate(self.purposes)}
        arrays: dict[str, list[bytes]] = {p: [] for p in self.purposes}
        masks = bytearray()
        for i in pending:
            mask = 0
            for purpose, data in self.parts[i]:
                arrays[purpose].append(data)
                mask |= bit[purpose]
            masks.append(48 + mask)  # "0" + mask: below 64, one byte
        return Batch(
            [b"[" + b",".join(arrays[p]) + b"]" for p in self.purposes],
            [len(arrays[p]) for p in self.purposes],
            bytes(masks),
        )


def connect(url: str, *, connect_timeout: float = 1.0, socket_timeout: float = 2.0) -> redis.Redis:
    """A client that fails fast: an unreachable or hung server costs seconds, not minutes.

    Only connection errors are retried (once, for a pooled connection the server closed);
    a timeout is not, since the command may have run.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1, (RedisConnectionError,)),
        health_check_interval=30,
        decode_responses=True,
    )


def subject_prefix(sid: str) -> str:
    return "{s:" + sid + "}"


class Store:
    def __init__(
        self,
        client: redis.Redis,
        *,
        shards: int = 4,
        dedup_window_s: int = 86_400,
        aof_timeout_ms: int = 1_000,
        index_ttl_s: int = 400 * 86_400,
        lifetimes: Lifetimes | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.r = client
        self.lifetimes = lifetimes or Lifetimes(
            holding_ms=(400 + 3 * 365) * DAY_MS, bare_ms=395 * DAY_MS, suppression_ms=1_500 * DAY_MS
        )
        self.limits = limits
        # Event writes are retried here, not inside redis-py, so that the script knows when
        # it runs again after a lost reply (see _EVENTS_LUA): a connection of their own.
        kwargs = dict(client.connection_pool.connection_kwargs)
        kwargs["retry"] = Retry(NoBackoff(), 0)
        self._writer = redis.Redis(
            connection_pool=redis.ConnectionPool(
                connection_class=client.connection_pool.connection_class, **kwargs
            )
        )
        self.index_ttl_ms = index_ttl_s * 1000
        self.shards = shards
        self.dedup_window_ms = dedup_window_s * 1000
        self.aof_timeout_ms = aof_timeout_ms
        self._consent_script = client.register_script(_CONSENT_LUA)
        self._events_script = client.register_script(_EVENTS_LUA)
        self._take_script = client.register_script(_TAKE_LUA)
        # None: not yet known; True/False once the server has told us.
        self.waitaof_supported: bool | None = None

    # ------------------------------------------------------------------ keys
    def stream_key(self, purpose: str, sid: str) -> str:
        shard = zlib.crc32(sid.encode()) % self.shards
        return f"ev:{{{purpose}:{shard}}}"

    @staticmethod
    def consent_key(sid: str) -> str:
        return subject_prefix(sid) + ":consent"

    @staticmethod
    def ledger_key(sid: str) -> str:
        return subject_prefix(sid) + ":ledger"

    @staticmethod
    def dedup_key(sid: str) -> str:
        return subject_prefix(sid) + ":dedup"

    @staticmethod
    def index_key(sid: str) -> str:
        return subject_prefix(sid) + ":index"

    @staticmethod
    def suppression_key(channel: str) -> str:
        return f"suppress:{channel}"

    def suppressed_since(self, channel: str, since_ms: int, limit: int) -> list[tuple[str, int]]:
        """Subjects who left ``channel`` (or all advertising) at ``since_ms`` or later, oldest
        first: (subject id, time in ms)."""
        found = self.r.zrangebyscore(
            self.suppression_key(channel), since_ms, "+inf", start=0, num=limit, withscores=True
        )
        return [(sid, int(score)) for sid, score in found]

    def suppressions_of(self, sid: str, channels: Sequence[str]) -> dict[str, int | None]:
        """Per channel, when the subject joined its suppression list (ms), or None."""
        pipe = self.r.pipeline(transaction=False)
        for channel in channels:
            pipe.zscore(self.suppression_key(channel), sid)
        return {
            ch: None if at is None else int(at)
            for ch, at in zip(channels, pipe.execute(), strict=True)
        }

    def dedup_count(self, sid: str) -> int:
        """How many event ids are remembered for the subject (to spot a resent event)."""
        return int(self.r.zcard(self.dedup_key(sid)))

    # ------------------------------------------------------------------ health
    def close(self) -> None:
        self.r.close()
        self._writer.close()

    def ping(self) -> bool:
        return bool(self.r.ping())

    # ------------------------------------------------------------------ consent
    def read_consent(self, sid: str) -> dict[str, str]:
        return self.r.hgetall(self.consent_key(sid))

    def append_consent(
        self,
        sid: str,
        *,
        expected_head: str,
        receipt_id: str,
        new_head: str,
        entry: Mapping[str, str],
        state: Mapping[str, str],
        grants: bool,
        limited: bool = False,
        suppress: Sequence[str] = (),
        unsuppress: Sequence[str] = (),
    ) -> int:
        """Append one ledger entry and update the state hash atomically; the entry's position.

        ``grants``: the new state grants an optional purpose (the subject may hold data, so
        its ledger is kept the longer lifetime). ``limited``: the write counts against the
        subject's ledger bucket (consent API calls; links, GPC and opt-outs change a state
        once each and are not limited). ``suppress`` / ``unsuppress``: channels whose
        suppression list the subject joins / leaves in the same step.
        Raises LedgerConflict when the ledger moved since ``expected_head`` was read,
        OverLimit when the bucket is empty, and NotDurable when the server has WAITAOF but
        did not confirm the local fsync.
        """
        bucket = self.limits.ledger_writes if self.limits and limited else Bucket(0, 0)
        life = self.lifetimes
        args: list[Any] = [
            expected_head,
            receipt_id,
            new_head,
            _encode(entry),
            sid,
            bucket.burst,
            bucket.per_hour,
            life.holding_ms,
            life.bare_ms,
            "1" if grants else "0",
            life.suppression_ms,
            len(suppress),
        ]
        for k, v in state.items():
            args += [k, v]
        keys = [self.consent_key(sid), self.ledger_key(sid), self.index_key(sid)]
        keys += [self.suppression_key(channel) for channel in suppress]
        keys += [self.suppression_key(channel) for channel in unsuppress]
        pipe = self.r.pipeline(transaction=False)
        self._consent_script(keys=keys, args=args, client=pipe)
        if self.waitaof_supported is not False:
            pipe.execute_command("WAITAOF", 1, 0, self.aof_timeout_ms)
        results = pipe.execute(raise_on_error=False)
        outcome = results[0]
        if isinstance(outcome, Exception):
            raise outcome
        status, value = outcome
        if status == "conflict":
            raise LedgerConflict(value)
        if status == "limited":
            raise OverLimit("ledger_writes", value)
        if len(results) > 1:
            self._check_durable(results[1])
        return int(value)

    def take_address(self, address_key: str, *, new_subject: bool = False) -> None:
        """Take a token from a client address's ledger-writes bucket, and from its
        new-subjects bucket when the write makes a new subject; all or none, OverLimit naming
        the empty one. ``address_key``: the address's keyed hash. Nothing without limits."""
        if self.limits is None:
            return
        buckets = [("address_ledger_writes", self.limits.address_ledger_writes)]
        if new_subject:
            buckets.append(("new_subjects", self.limits.new_subjects))
        self._take(address_key, buckets)

    def take_new_subject(self, address_key: str) -> None:
        """Take a token from the new-subjects bucket of a client address (its keyed hash);
        OverLimit when it is empty. Nothing happens without limits."""
        if self.limits is not None:
            self._take(address_key, [("new_subjects", self.limits.new_subjects)])

    def _take(self, address_key: str, buckets: list[tuple[str, Bucket]]) -> None:
        # One hash tag per address: its buckets share a slot, so one script takes from all.
        keys = [f"rl:{{{address_key}}}:{name}" for name, _ in buckets]
        args: list[Any] = []
        for _, bucket in buckets:
            args += [bucket.burst, bucket.per_hour, 1]
        answer = self._take_script(keys=keys, args=args)
        if answer != 0:
            position, wait_ms = answer
            raise OverLimit(buckets[int(position) - 1][0], int(wait_ms))

    def _check_durable(self, answer: Any) -> None:
        if isinstance(answer, ResponseError):
            msg = str(answer).lower()
            if "unknown command" in msg or "appendonly" in msg:
                if self.waitaof_supported is not False:
                    log.warning(
                        "server cannot confirm fsync (WAITAOF: %s); relying on its AOF", answer
                    )
                self.waitaof_supported = False
                return
            raise answer
        if isinstance(answer, Exception):
            raise answer
        self.waitaof_supported = True
        if int(answer[0]) < 1:
            raise NotDurable("the consent was written but its fsync was not confirmed in time")

    def ledger_page(self, sid: str, offset: int, limit: int) -> LedgerPage:
        """Up to ``limit`` ledger entries from position ``offset`` (0-based), in one round
        trip with what checking them needs (see LedgerPage)."""
        key = self.ledger_key(sid)
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.consent_key(sid), "n", "head")
        pipe.llen(key)
        pipe.lrange(key, offset, offset + max(limit, 1) - 1)
        pipe.lindex(key, max(offset - 1, 0))
        (n, head), length, raw, before = pipe.execute()
        entries = [_ledger_entry(item) or {} for item in raw[: max(limit, 0)]]
        return LedgerPage(
            entries,
            offset + 1,
            _ledger_entry(before) if offset > 0 else None,
            length,
            int(n or 0),
            head or "",
        )

    def ledger_around(self, sid: str, seq: int) -> LedgerPage:
        """Entries ``seq - 1`` to ``seq + 1`` of a subject's ledger (what checking one entry's
        place needs), in one round trip with its length, its last entry (as ``before``) and
        the head the consent state records: a few entries whatever the ledger's length."""
        key = self.ledger_key(sid)
        first = max(seq - 1, 1)
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.consent_key(sid), "n", "head")
        pipe.llen(key)
        pipe.lrange(key, first - 1, seq)
        pipe.lindex(key, -1)
        (n, head), length, raw, last = pipe.execute()
        entries = [_ledger_entry(item) or {} for item in raw]
        return LedgerPage(entries, first, _ledger_entry(last), length, int(n or 0), head or "")

    def ledger(self, sid: str, chunk: int = 1_000) -> Iterator[dict[str, str]]:
        """The whole ledger, oldest first, read ``chunk`` entries at a time."""
        offset = 0
        while True:
            raw = self.r.lrange(self.ledger_key(sid), offset, offset + chunk - 1)
            for item in raw:
                yield _ledger_entry(item) or {}
            if len(raw) < chunk:
                return
            offset += chunk

    # ------------------------------------------------------------------ events
    def store_events(
        self,
        sid: str,
        events: Grouped | Sequence[tuple[str, Sequence[EventPart]]],
        min_grant: Mapping[str, int],
        now_ms: int,
        expect_head: str = ANY_HEAD,
        *,
        minted_ids: bool = False,
        contexts: Mapping[str, bytes] | None = None,
    ) -> list[tuple[str, ...] | None]:
        """Store each event's parts whose purpose is granted on the ledger right now.

        ``events``: a ``Grouped`` (``split.Split``), or each event's id and parts in
        purpose-name order. ``min_grant[purpose]`` is the smallest ``g:`` value that counts
        as consent (1 + the index of the version the purpose last changed in).
        ``expect_head`` is a prefix of the ledger head the caller's view of the consent came
        from; when the ledger moved since, nothing is stored and StaleConsent carries the
        current state. ``minted_ids``: the gateway made every event id itself (the pixel
        without one), so no event can be a retry and the dedup set is neither read nor
        written. ``contexts``: per purpose, the request context's fields serving it (a JSON
        object), stored once in its entry. Returns, per event, None for a duplicate or the
        purposes stored (empty when none was consented).
        """
        grouped = events if isinstance(events, Grouped) else PartsByEvent(events)
        ids = grouped.ids
        purposes = grouped.purposes
        if not purposes:
            return [() for _ in ids]
        if len(purposes) > MAX_PURPOSES:
            raise ValueError(f"at most {MAX_PURPOSES} purposes per write")
        out: list[tuple[str, ...] | None] = [()] * len(ids)
        pending: list[int] = []
        if minted_ids or len(set(ids)) == len(ids):
            pending = list(range(len(ids)))
        else:
            firsts: set[str] = set()
            for i, eid in enumerate(ids):
                if eid in firsts:
                    out[i] = None  # the same id earlier in this request: a duplicate
                else:
                    firsts.add(eid)
                    pending.append(i)
        flags = ("m" if minted_ids else "") + ("t" if random.random() < TRIM_DEDUP_SHARE else "")
        keys = [self.consent_key(sid), self.dedup_key(sid), self.index_key(sid)]
        keys += [self.ledger_key(sid), *(self.stream_key(p, sid) for p in purposes)]
        bucket = self.limits.events if self.limits else Bucket(0, 0)
        head = [now_ms, self.dedup_window_ms, self.index_ttl_ms, expect_head, flags, sid]
        head += [bucket.burst, bucket.per_hour, self.lifetimes.holding_ms]
        head += [len(purposes), *purposes, *(min_grant[p] for p in purposes)]
        tail = [(contexts or {}).get(p, b"") for p in purposes]
        while True:
            batch = grouped.batch(pending)
            args = [*head, *batch.counts, *batch.arrays, batch.masks]
            args += ["\n".join([ids[i] for i in pending]), *tail]
            status, answer = self._run_events(keys, args, minted_ids)
            if status == "stale":
                it = iter(answer)
                raise StaleConsent(dict(zip(it, it, strict=True)))
            if status == "limited":
                raise OverLimit("events", answer)
            if status == "dup":  # stored nothing: mark them, send the others again
                dup = {pending[j - 1] for j in answer}
                for i in dup:
                    out[i] = None
                pending = [i for i in pending if i not in dup]
                if not pending:
                    return out
                continue
            break
        by_mask: dict[int, tuple[str, ...] | None] = {-1: None}
        for i, mask in zip(pending, answer, strict=True):
            kept = by_mask.get(mask, _MISSING)
            if kept is _MISSING:
                kept = by_mask[mask] = tuple(p for j, p in enumerate(purposes) if mask >> j & 1)
            out[i] = kept
        return out

    def _run_events(self, keys: list[str], args: list[Any], minted_ids: bool) -> Any:
        try:
            return self._events_script(keys=keys, args=args, client=self._writer)
        except RedisConnectionError:
            if minted_ids:
                raise  # it may have run, and without dedup a retry could store it twice
            args[FLAGS] += "r"  # it may have run: say so (a server that is down fails again)
            return self._events_script(keys=keys, args=args, client=self._writer)

    def erase_subject(self, sid: str, also: Sequence[str] = ()) -> tuple[int, int]:
        """Delete everything stored about ``sid``: its event parts (found by its index), its
        consent state, ledger, dedup ids and index, and the keys in ``also``; how many
        stream entries and how many keys were removed.

        One transaction, watched on the index: an event write landing between reading the
        index and deleting restarts it, so no part written before the erasure survives it,
        and none can be written after (the consent state is gone: nothing is granted).
        """
        index = self.index_key(sid)
        removed = 0

        def erase(pipe: redis.client.Pipeline) -> None:
            nonlocal removed
            refs = [ref.split(" ") for ref in pipe.zrange(index, 0, -1)]
            pipe.multi()
            for _, key, entry_id in refs:
                pipe.xdel(key, entry_id)
            pipe.delete(
                self.consent_key(sid), self.ledger_key(sid), self.dedup_key(sid), index, *also
            )
            removed = len(refs)

        results = self.r.transaction(erase, index)
        return removed, int(results[-1])

    def subject_events(
        self, sid: str, rank: int, skip: int, limit: int
    ) -> tuple[list[tuple[str, dict[str, Any]]], tuple[int, int], bool]:
        """Up to ``limit`` of the subject's stored event parts, oldest first, from its index's
        entry ``rank`` (0-based) after ``skip`` of that entry's parts: (purpose, part) pairs,
        each part with ``stream_id``, the id of the entry holding it; where the next page
        starts (rank, skip); and whether there is more.

        Index entries are added in time order, so a page's position stays valid while the
        subject keeps sending events; entries trimmed by retention since yield nothing.
        """
        index = self.index_key(sid)
        refs = self.r.zrange(index, rank, rank + max(limit, 1) - 1)
        total = int(self.r.zcard(index))
        out: list[tuple[str, dict[str, Any]]] = []
        # Entries are read a few at a time and reading stops once the page is full: an entry
        # holds up to a whole batch (500 parts), so reading ``limit`` entries at once could
        # pull a thousand times what the page shows.
        for at in range(0, len(refs), READ_AHEAD):
            chunk = [ref.split(" ") for ref in refs[at : at + READ_AHEAD]]
            pipe = self.r.pipeline(transaction=False)
            for _, key, entry_id in chunk:
                pipe.xrange(key, entry_id, entry_id)
            for i, ((purpose, _, entry_id), entries) in enumerate(
                zip(chunk, pipe.execute(), strict=True), start=at
            ):
                parts = [
                    {**event, "stream_id": entry_id}
                    for _, fields in entries  # empty when trimmed by retention since
                    if fields.get("sid") == sid
                    for event in entry_events(fields)
                ]
                start = skip if i == 0 else 0
                room = limit - len(out)
                out += [(purpose, part) for part in parts[start : start + room]]
                if start + room < len(parts):
                    return out, (rank + i, start + room), True
                if len(out) >= limit:
                    return out, (rank + i + 1, 0), rank + i + 1 < total
        following = rank + len(refs)
        return out, (following, 0), following < total

    def trim_before(self, purpose: str, min_id_ms: int) -> int:
        """Remove a purpose's event parts older than ``min_id_ms`` from all its shards."""
        pipe = self.r.pipeline(transaction=False)
        for shard in range(self.shards):
            pipe.xtrim(f"ev:{{{purpose}:{shard}}}", minid=str(min_id_ms), approximate=False)
        return sum(pipe.execute())
