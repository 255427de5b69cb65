"""The audience index in the store (``core.ports.AudienceStore``).

Per shard (a slot group: its keys carry the group's tag, so a cluster spreads them over its
masters like the data they count): ``aud:chg`` (the changes the index follows: consent on
the counted purpose, links, traits, erasures; written by the same scripts as the changes),
``aud:marks`` (withdrawals and erasures not yet folded into the saved bitmaps: ``<person
key>|<entry id>`` or ``#<number>|<entry id>``), ``aud:pid`` and ``aud:next`` (person numbers),
``aud:bm``, ``aud:ver`` and ``aud:gen`` (the saved bitmaps, the generation each last changed in,
and the shard's generation). The feed is read through the consumer group ``audiences`` of
each shard's activity streams and change stream; a change entry is deleted once acknowledged
(a rebuild reads the current state, not the changes).

The queries' audit log is one stream (``aud:{audit}``) trimmed by age, and what each API
key's queries keep lies in its slot: ``aud:{audit}:k:<the key digest's first characters>:``
``busy`` (the lock), ``budget:<YYYY-MM>``, ``answer:<hash>`` (a hash: true counts -> answer)
and ``recent``. A query's end (spend, answer, recent queries, audit entry, release) is then
one script on one node, cluster or not; marketers' queries, a few a second at most, do not
load one slot.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from ..core.ports import QueryEnd, QueryOutcome, QueryState, RecentQuery
from ..core.records import FeedEntry, ShardState
from .client import Client, lua, translating
from .keys import Keys

GROUP = "audiences"
CONSUMER = "indexer"
BUDGET_KEEP_S = 40 * 86_400  # a month's budget record outlives its month
EPOCH = 1 << 40  # generations of one rebuild epoch (a shard saves far fewer times)
CHANGE_KINDS = {
    "c": "consent",
    "l": "link",
    "u": "unlink",
    "t": "traits",
    "e": "erase",
    "w": "forget",  # an activity purpose withdrawn: what the index derived from events goes
}


class RedisAudienceStore:
    def __init__(self, client: Client, keys: Keys, activity: Sequence[str], raw: Client) -> None:
        self.r = client
        self.raw = raw  # replies as bytes: the bitmaps
        self.keys = keys
        self.shards = keys.groups
        self.activity = tuple(activity)
        self._numbers = client.register_script(lua("audience_numbers"))
        self._save = client.register_script(lua("audience_save"))
        self._lease = client.register_script(lua("audience_lease"))
        self._state = client.register_script(lua("audience_state"))
        self._begin = client.register_script(lua("audience_begin"))
        self._finish = client.register_script(lua("audience_finish"))
        self._release = client.register_script(lua("lock_release"))
        self.cluster = isinstance(client, RedisCluster)
        self._groups_made = False
        bits = 32 - max(self.shards - 1, 0).bit_length()
        self._room = 1 << bits

    def _streams(self, shard: int) -> list[str]:
        k = self.keys
        return [k.group_stream(shard, p) for p in self.activity] + [k.audience(shard, "chg")]

    def _shard_of_person(self, person: str) -> int:
        return self.keys.group_of(person[2:])

    # ------------------------------------------------------------------ the indexer's
    @translating
    def take_lease(self, owner: str, ttl_ms: int) -> str:
        return str(self._lease(keys=[Keys.AUDIENCE_LEASE], args=[owner, ttl_ms]))

    @translating
    def basis(self) -> str | None:
        found = self.r.get(Keys.AUDIENCE_BASIS)
        return None if found is None else str(found)

    @translating
    def set_basis(self, basis: str) -> None:
        self.r.set(Keys.AUDIENCE_BASIS, basis)

    @translating
    def release_lease(self, owner: str) -> None:
        self._release(keys=[Keys.AUDIENCE_LEASE], args=[owner])

    def _make_groups(self, chg_from: str = "0") -> None:
        pipe = self.r.pipeline(transaction=False)
        for shard in range(self.shards):
            for key in self._streams(shard):
                start = chg_from if key.endswith(":aud:chg") else "0"
                pipe.xgroup_create(key, GROUP, id=start, mkstream=True)
        for answer in pipe.execute(raise_on_error=False):
            if isinstance(answer, Exception) and "BUSYGROUP" not in str(answer):
                raise answer
        self._groups_made = True

    @translating
    def read_feed(self, count: int, *, pending: bool) -> list[FeedEntry]:
        if not self._groups_made:
            self._make_groups()
        per = max(count // self.shards, 1)
        pipe = self.r.pipeline(transaction=False)
        for shard in range(self.shards):
            streams = dict.fromkeys(self._streams(shard), "0" if pending else ">")
            pipe.xreadgroup(GROUP, CONSUMER, streams, count=per)  # type: ignore[arg-type]
        answers = pipe.execute(raise_on_error=False)
        out: list[FeedEntry] = []
        for shard, answer in enumerate(answers):
            if isinstance(answer, ResponseError) and "NOGROUP" in str(answer):
                # a stream went (all its data expired): its group is made again next round,
                # and the other shards' entries, delivered now, are taken
                self._groups_made = False
                continue
            if isinstance(answer, Exception):
                raise answer
            for key, entries in _streams_of(answer):
                for entry_id, fields in entries:
                    out.extend(self._decode(shard, str(key), str(entry_id), fields))
        out.sort(key=lambda e: (e.ms, e.ref))
        return out

    def _decode(
        self, shard: int, key: str, entry_id: str, fields: Mapping[str, str] | None
    ) -> list[FeedEntry]:
        ref = f"{key} {entry_id}"
        ms = int(entry_id.split("-", 1)[0])
        if not fields:  # deleted since it was delivered (an erasure): acknowledged only
            return [FeedEntry(shard, ref, ms, "gone")]
        if not key.endswith(":aud:chg"):
            events, context = fields.get("events", "[]"), fields.get("context", "")
            return [FeedEntry(shard, ref, ms, "events", fields.get("sid", ""), events, context)]
        kind = CHANGE_KINDS.get(fields.get("k", ""), "gone")
        sid = fields.get("sid", "")
        person = int(fields["p"]) if fields.get("p", "").isdigit() else None
        found = [FeedEntry(shard, ref, ms, kind, sid, account=fields.get("a"), person=person)]
        if kind == "link" and fields.get("b"):  # it left another account
            found.insert(0, FeedEntry(shard, ref, ms, "unlink", sid, account=fields["b"]))
        return found

    @translating
    def ack_feed(self, entries: Sequence[FeedEntry]) -> None:
        by_key: dict[str, list[str]] = {}
        for e in entries:
            key, _, entry_id = e.ref.partition(" ")
            by_key.setdefault(key, []).append(entry_id)
        if not by_key:
            return
        pipe = self.r.pipeline(transaction=False)
        changes: dict[str, set[str]] = {}
        for key, ids in by_key.items():
            pipe.xack(key, GROUP, *ids)
            if key.endswith(":aud:chg"):
                pipe.xdel(key, *ids)
                changes[key.removesuffix("chg") + "marks"] = set(ids)
        for marks in changes:
            pipe.smembers(marks)
        answers = pipe.execute()
        found = answers[len(answers) - len(changes) :]
        settled = [
            (marks, [m for m in members if m.rsplit("|", 1)[-1] in ids])
            for (marks, ids), members in zip(changes.items(), found, strict=True)
        ]
        if any(gone for _, gone in settled):
            pipe = self.r.pipeline(transaction=False)
            for marks, gone in settled:
                if gone:
                    pipe.srem(marks, *gone)
            pipe.execute()

    @translating
    def links(self, sids: Sequence[str]) -> dict[str, str | None]:
        pipe = self.r.pipeline(transaction=False)
        for sid in sids:
            pipe.get(self.keys.subject(sid, "account"))
        return {
            sid: (None if v is None else str(v))
            for sid, v in zip(sids, pipe.execute(), strict=True)
        }

    @translating
    def numbers(self, persons: Sequence[str], *, allocate: bool) -> dict[str, int]:
        by_shard: dict[int, list[str]] = {}
        for person in dict.fromkeys(persons):
            by_shard.setdefault(self._shard_of_person(person), []).append(person)
        found: list[Any]
        if allocate:
            # a script per shard (a cluster's pipelines take no scripts), each on its slot
            found = [
                self._numbers(
                    keys=[self.keys.audience(shard, "pid"), self.keys.audience(shard, "next")],
                    args=[shard * self._room, self._room, *members],
                )
                for shard, members in by_shard.items()
            ]
        else:
            pipe = self.r.pipeline(transaction=False)
            for shard, members in by_shard.items():
                pipe.hmget(self.keys.audience(shard, "pid"), members)
            found = pipe.execute()
        out: dict[str, int] = {}
        for members, numbers in zip(by_shard.values(), found, strict=True):
            for person, n in zip(members, numbers, strict=True):
                if n is not None:
                    out[person] = int(n)
        return out

    @translating
    def all_persons(self) -> Iterator[tuple[str, int]]:
        for shard in range(self.shards):
            for person, n in self.r.hscan_iter(self.keys.audience(shard, "pid"), count=1000):
                yield str(person), int(n)

    @translating
    def load_shard(self, shard: int) -> ShardState:
        return self.shard_bitmaps(shard, -1)

    @translating
    def save_shard(self, shard: int, changed: Mapping[str, bytes], dropped: Sequence[str]) -> int:
        k = self.keys
        keys = [k.audience(shard, "bm"), k.audience(shard, "ver"), k.audience(shard, "gen")]
        names = list(changed)
        args: list[Any] = [len(names), *names, *(changed[n] for n in names), *dropped]
        return int(self._save(keys=keys, args=args))

    @translating
    def reset(self) -> None:
        """Saved bitmaps and marks forgotten, the consumer groups made again: the activity
        streams read from their start, the change streams from now (a rebuild reads the
        current consent, links and traits instead). Person numbers stay."""
        pipe = self.r.pipeline(transaction=False)
        for shard in range(self.shards):
            for kind in ("bm", "ver", "marks"):
                pipe.delete(self.keys.audience(shard, kind))
            pipe.incr(self.keys.audience(shard, "gen"))
            for key in self._streams(shard):
                pipe.xgroup_destroy(key, GROUP)
        pipe.incr(Keys.AUDIENCE_EPOCH)
        pipe.execute(raise_on_error=False)
        self._make_groups(chg_from="$")

    # ------------------------------------------------------------------ readers
    @functools.cached_property
    def _state_keys(self) -> list[str]:
        """What ``lua/audience_state`` reads (made once: 128 names on every query)."""
        k = self.keys
        gens = [k.audience(shard, "gen") for shard in range(self.shards)]
        marks = [k.audience(shard, "marks") for shard in range(self.shards)]
        return [*gens, *marks, Keys.AUDIENCE_EPOCH]

    def _generations(self, found: Sequence[Any]) -> tuple[list[int], list[str]]:
        """``lua/audience_state``'s answer as ``generations()`` returns it."""
        counts = [int(g) for g in found[: self.shards]]
        epoch = int(found[self.shards])
        members = [str(m) for m in found[self.shards + 1 :]]
        return self._with_epoch(counts, epoch, members)

    @staticmethod
    def _with_epoch(
        counts: list[int], epoch: int, members: list[str]
    ) -> tuple[list[int], list[str]]:
        # a rebuild's epoch counts as a generation far above any saved one: readers reload
        generations = [g + epoch * EPOCH for g in counts]
        return generations, [m.rsplit("|", 1)[0] for m in members]

    @translating
    def generations(self) -> tuple[list[int], list[str]]:
        if not self.cluster:  # one script rather than 129 commands: 3 ms of a query
            return self._generations(self._state(keys=self._state_keys))
        # The marks first, the generations after: a mark goes only once the bitmaps it waits
        # for are saved, so a mark not seen is a save the second read sees (one pipeline
        # would reach the masters in no particular order).
        k = self.keys
        pipe = self.r.pipeline(transaction=False)
        for shard in range(self.shards):
            pipe.smembers(k.audience(shard, "marks"))
        members = [str(m) for ms in pipe.execute() for m in ms]
        pipe = self.r.pipeline(transaction=False)
        for shard in range(self.shards):
            pipe.get(k.audience(shard, "gen"))
        pipe.get(Keys.AUDIENCE_EPOCH)
        answers = pipe.execute()
        counts = [int(g or 0) for g in answers[: self.shards]]
        return self._with_epoch(counts, int(answers[-1] or 0), members)

    @translating
    def shard_bitmaps(self, shard: int, after: int) -> ShardState:
        k = self.keys
        pipe = self.r.pipeline(transaction=False)
        pipe.get(k.audience(shard, "gen"))
        pipe.get(Keys.AUDIENCE_EPOCH)
        pipe.hgetall(k.audience(shard, "ver"))
        gen, epoch, versions = pipe.execute()
        epoch = int(epoch or 0)
        base = epoch * EPOCH
        generation = int(gen or 0) + base
        complete = after < base  # everything (a first read, or a rebuild since)
        if complete:
            names = [str(n) for n in versions]
        else:
            names = [str(n) for n, v in versions.items() if int(v) + base > after]
        return ShardState(generation, self._blobs(shard, names), complete)

    def _blobs(self, shard: int, names: Sequence[str]) -> dict[str, bytes]:
        if not names:
            return {}
        raw = cast("list[bytes | None]", self.raw.hmget(self.keys.audience(shard, "bm"), names))
        return {n: b for n, b in zip(names, raw, strict=True) if b is not None}

    # ------------------------------------------------------------------ queries
    @staticmethod
    def _query_keys(key: str, question: str, month: str) -> list[str]:
        digest = hashlib.sha256(question.encode()).hexdigest()[:32]
        return [
            Keys.audience_key(key, "busy"),
            Keys.audience_key(key, f"answer:{digest}"),
            Keys.audience_key(key, "recent"),
            Keys.audience_key(key, f"budget:{month}"),
        ]

    @translating
    def begin_query(
        self, key: str, question: str, month: str, token: str, lock_ms: int, *, index: bool
    ) -> QueryState | None:
        keys = self._query_keys(key, question, month)
        args: list[str | int] = [token, lock_ms]
        state: tuple[list[int], list[str]] | None = None
        if index and not self.cluster:  # one round trip for both: 1.2 ms of an estimate
            read, found = self._both(keys, args)
            state = self._generations(read)
        else:
            if index:
                state = self.generations()
            found = self._begin(keys=keys, args=args)
        if not found:
            return None
        recent, spent, answers = found
        pairs = _pairs(answers)
        return QueryState(pairs, [_recent(str(q)) for q in recent], float(spent), state)

    def _both(self, keys: list[str], args: list[str | int]) -> list[Any]:
        """The index's state and the query's begin, pipelined by their SHA alone: a script
        object in a pipeline makes redis-py ask ``SCRIPT EXISTS`` first, a round trip more.
        After a store restart forgot them, they are loaded and the pair sent again (the begin
        takes a lock its own token holds again)."""
        answers = self._pair(keys, args)
        if any(isinstance(a, NoScriptError) for a in answers):
            for script in (self._state, self._begin):
                self.r.script_load(script.script)
            answers = self._pair(keys, args)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def _pair(self, keys: list[str], args: list[str | int]) -> list[Any]:
        pipe = self.r.pipeline(transaction=False)
        pipe.evalsha(self._state.sha, len(self._state_keys), *self._state_keys)
        pipe.evalsha(self._begin.sha, len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))

    @translating
    def finish_query(self, key: str, end: QueryEnd) -> QueryOutcome:
        recent = end.recent
        oldest = int(time.time() * 1000) - end.audit_keep_ms
        args: list[str | int] = [
            end.token,
            repr(end.epsilon),
            repr(end.budget),
            BUDGET_KEEP_S,
            end.answer or "",
            end.answer_ttl_s,
            f"{recent.query}\t{recent.count}" if recent else "",
            recent.keep if recent else 0,
            recent.ttl_s if recent else 0,
            end.audit or "",
            str(max(oldest, 0)),
            end.counts,
            f"{recent.query}\t" if recent else "",
        ]
        keys = [*self._query_keys(key, end.question, end.month), Keys.AUDIENCE_AUDIT]
        keys.append(Keys.audience_key(key, "mine"))
        outcome, value = self._finish(keys=keys, args=args)
        if outcome == "twin":  # rare (a lapsed lock): the month's spending read on its own
            spent = float(self.r.get(keys[3]) or 0)
            return QueryOutcome("twin", spent, str(value))
        return QueryOutcome(str(outcome), float(value))

    @translating
    def audit_since(self, since_ms: int, limit: int) -> list[str]:
        found = cast(
            "list[tuple[str, dict[str, str]]]",
            self.r.xrange(Keys.AUDIENCE_AUDIT, min=str(max(since_ms, 0)), count=limit),
        )
        return [str(fields["e"]) for _, fields in found]

    @translating
    def own_latest(self, key: str) -> list[str]:
        return [str(e) for e in self.r.lrange(Keys.audience_key(key, "mine"), 0, 19)]

    @translating
    def spent(self, key: str, month: str) -> float:
        return float(self.r.get(Keys.audience_key(key, f"budget:{month}")) or 0.0)


def _streams_of(answer: Any) -> list[tuple[str, list[tuple[str, Any]]]]:
    """XREADGROUP's answer as (stream, entries) pairs (RESP2 list, or RESP3 map)."""
    if not answer:
        return []
    if isinstance(answer, dict):
        return [(str(k), v[0] if v and isinstance(v[0], list) else v) for k, v in answer.items()]
    return [(str(k), v) for k, v in answer]


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    """HGETALL's answer inside a script (a flat list) as a dict."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _recent(kept: str) -> RecentQuery:
    """A recent query as kept: ``<canonical JSON>\t<count>`` (JSON never holds a raw tab);
    one kept without a count (an older version) as count -1."""
    query, tab, count = kept.rpartition("\t")
    if not tab or not count.isdigit():
        return RecentQuery(kept, -1)
    return RecentQuery(query, int(count))
