"""Redis storage: consent state, the hash-chained ledger, purpose streams, dedup, the index.

Keys (DESIGN.md section 6). Everything about one subject carries the hash tag ``{s:<id>}``:

* ``{s:<id>}:consent``  hash: ``g:<purpose>`` = 1 + index of the policy version a grant was
  given under, ``0`` when refused; ``v:``/``t:`` the version and time for display; ``head``
  (hash of the last ledger entry), ``receipt``/``entry`` (the last receipt id and stream id).
* ``{s:<id>}:ledger``   stream: the consent ledger, each entry holding the previous hash.
* ``{s:<id>}:dedup``    sorted set: event ids seen in the dedup window, scored by time.
* ``{s:<id>}:index``    sorted set: ``<purpose> <stream key> <entry id>`` of every stored part.
* ``ev:{<purpose>:<shard>}`` streams: event parts, one family per purpose.

Every write is one Lua script, so a request stores all of its data or none of it, and the
consent check happens inside the same atomic step as the append ("consented on the ledger
at that moment"). The scripts touch keys of several hash slots, so this module targets a
single Redis or Valkey server; Redis Cluster needs the event scripts split per slot.
"""

from __future__ import annotations

import json
import logging
import secrets
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry

log = logging.getLogger(__name__)

DUPLICATE = "d"

# KEYS: consent hash, ledger stream. ARGV: expected head, receipt id, new head hash,
# n entry fields, entry field/value pairs..., state field/value pairs...
_CONSENT_LUA = """
local head = redis.call('HGET', KEYS[1], 'head') or ''
if redis.call('HGET', KEYS[1], 'receipt') == ARGV[2] then
  return {'dup', redis.call('HGET', KEYS[1], 'entry')}
end
if head ~= ARGV[1] then
  return {'conflict', head}
end
local n = tonumber(ARGV[4])
local entry = {}
for i = 5, 4 + n do entry[#entry + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(entry))
local state = {'head', ARGV[3], 'receipt', ARGV[2], 'entry', id}
for i = 5 + n, #ARGV do state[#state + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(state))
redis.call('HINCRBY', KEYS[1], 'rev', 1)
return {'ok', id}
"""

# KEYS: consent hash, dedup zset, index zset, one stream key per purpose in ARGV[3].p order.
# ARGV: now (ms), dedup window (ms), JSON {"p": [[purpose, min grant]...],
#       "e": [[event id, [[purpose position, [field, value, ...]], ...]], ...]},
#       index lifetime (ms: the longest retention, so an idle subject's index expires)
# Returns per event: "d" (duplicate), "" (no part consented) or "i,j" purpose positions stored.
_EVENTS_LUA = """
local done = redis.call('GET', KEYS[4])
if done then return cjson.decode(done) end
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local req = cjson.decode(ARGV[3])
local ok = {}
for i, p in ipairs(req.p) do
  local g = tonumber(redis.call('HGET', KEYS[1], 'g:' .. p[1]) or '0') or 0
  ok[i] = g >= p[2]
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local out = {}
local remembered = false
for j, ev in ipairs(req.e) do
  local eid = ev[1]
  if redis.call('ZSCORE', KEYS[2], eid) then
    out[j] = 'd'
  else
    local stored = {}
    for _, part in ipairs(ev[2]) do
      local pi = part[1]
      if ok[pi] then
        local key = KEYS[4 + pi]
        local id = redis.call('XADD', key, '*', unpack(part[2]))
        redis.call('ZADD', KEYS[3], now, req.p[pi][1] .. ' ' .. key .. ' ' .. id)
        stored[#stored + 1] = tostring(pi)
      end
    end
    if #stored > 0 then
      redis.call('ZADD', KEYS[2], now, eid)
      remembered = true
    end
    out[j] = table.concat(stored, ',')
  end
end
if remembered then
  redis.call('PEXPIRE', KEYS[2], window)
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]))
end
redis.call('SET', KEYS[4], cjson.encode(out), 'PX', 60000)
return out
"""


class LedgerConflict(Exception):
    """Another consent write for the same subject landed first; re-read and try again."""

    def __init__(self, head: str) -> None:
        super().__init__(head)
        self.head = head


class NotDurable(Exception):
    """The server did not confirm the fsync of a consent write in time."""


@dataclass(frozen=True, slots=True)
class EventPart:
    """The fields of one event that serve one purpose, flattened for a stream entry."""

    purpose: str
    fields: tuple[str, ...]  # field, value, field, value...


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
    ) -> None:
        self.r = client
        self.index_ttl_ms = index_ttl_s * 1000
        self.shards = shards
        self.dedup_window_ms = dedup_window_s * 1000
        self.aof_timeout_ms = aof_timeout_ms
        self._consent_script = client.register_script(_CONSENT_LUA)
        self._events_script = client.register_script(_EVENTS_LUA)
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

    # ------------------------------------------------------------------ health
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
    ) -> str:
        """Append one ledger entry and update the state hash atomically; the entry's stream id.

        Raises LedgerConflict when the ledger moved since ``expected_head`` was read, and
        NotDurable when the server has WAITAOF but did not confirm the local fsync.
        """
        args: list[str] = [expected_head, receipt_id, new_head, str(len(entry) * 2)]
        for k, v in entry.items():
            args += [k, v]
        for k, v in state.items():
            args += [k, v]
        keys = [self.consent_key(sid), self.ledger_key(sid)]
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
        if len(results) > 1:
            self._check_durable(results[1])
        return value

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

    def ledger(self, sid: str) -> list[tuple[str, dict[str, str]]]:
        return self.r.xrange(self.ledger_key(sid))

    # ------------------------------------------------------------------ events
    def store_events(
        self,
        sid: str,
        events: Sequence[tuple[str, Sequence[EventPart]]],
        min_grant: Mapping[str, int],
        now_ms: int,
    ) -> list[str]:
        """Store each event's parts whose purpose is granted on the ledger right now.

        ``min_grant[purpose]`` is the smallest ``g:`` value that counts as consent (1 + the
        index of the version the purpose last changed in). Returns, per event, DUPLICATE or
        the purposes stored (empty when nothing was consented).
        """
        purposes = sorted({p.purpose for _, parts in events for p in parts})
        pos = {p: i + 1 for i, p in enumerate(purposes)}
        payload = {
            "p": [[p, min_grant[p]] for p in purposes],
            "e": [
                [eid, [[pos[p.purpose], list(p.fields)] for p in parts]] for eid, parts in events
            ],
        }
        if not purposes:
            # cjson decodes [] as {}; with no purposes nothing can be stored anyway.
            return ["" for _ in events]
        keys = [
            self.consent_key(sid),
            self.dedup_key(sid),
            self.index_key(sid),
            subject_prefix(sid) + ":req:" + secrets.token_hex(8),
        ]
        keys += [self.stream_key(p, sid) for p in purposes]
        raw = self._events_script(
            keys=keys,
            args=[
                now_ms,
                self.dedup_window_ms,
                json.dumps(payload, separators=(",", ":")),
                self.index_ttl_ms,
            ],
        )
        out: list[str] = []
        for answer in raw:
            if answer == DUPLICATE:
                out.append(DUPLICATE)
            elif answer:
                out.append(",".join(purposes[int(i) - 1] for i in answer.split(",")))
            else:
                out.append("")
        return out

    def subject_events(self, sid: str, limit: int) -> tuple[dict[str, list[dict[str, Any]]], bool]:
        """The subject's stored event parts grouped by purpose, newest ``limit``; and truncated."""
        refs = self.r.zrange(self.index_key(sid), -limit - 1, -1)
        truncated = len(refs) > limit
        refs = refs[-limit:] if truncated else refs
        parsed = [ref.split(" ") for ref in refs]
        pipe = self.r.pipeline(transaction=False)
        for _, key, entry_id in parsed:
            pipe.xrange(key, entry_id, entry_id)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for (purpose, _, entry_id), found in zip(parsed, pipe.execute(), strict=True):
            if not found:
                continue  # trimmed by retention since
            fields = dict(found[0][1])
            fields["stream_id"] = entry_id
            grouped.setdefault(purpose, []).append(fields)
        return grouped, truncated

    def trim_before(self, purpose: str, min_id_ms: int) -> int:
        """Remove a purpose's event parts older than ``min_id_ms`` from all its shards."""
        pipe = self.r.pipeline(transaction=False)
        for shard in range(self.shards):
            pipe.xtrim(f"ev:{{{purpose}:{shard}}}", minid=str(min_id_ms), approximate=False)
        return sum(pipe.execute())
