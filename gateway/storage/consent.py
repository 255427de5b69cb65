"""Consent state and ledger: the hash and list of one subject, and the address buckets.

The consent state is a hash (``g:<purpose>`` the level a purpose was granted at, ``v:`` and
``t:`` the version and time it was decided, ``ch:<channel>`` when a channel was left,
``head`` and ``n`` the ledger's last hash and length, buckets ``lt``/``ls`` and ``et``/``es``);
it leaves this module only as a ``ConsentRecord``. The ledger is a list of JSON entries. An
entry and the state change it makes are written by one script (``lua/consent.lua``), and
acknowledged once the server confirms the write is durable: its own fsync (``WAITAOF``, on
Valkey and Redis >= 7.2) and, where the server has replicas, a replica's copy (``WAIT``), so a
consent acknowledged before a failover is on the new primary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

import msgspec
import redis
from redis.cluster import RedisCluster
from redis.exceptions import AskError, MovedError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from ..core.errors import LedgerConflict, NotDurable, OverLimit
from ..core.records import (
    NO_LIMIT,
    Appended,
    Bucket,
    ConsentChange,
    ConsentRecord,
    LedgerPage,
    Lifetimes,
    Limits,
)
from .client import Client, node_of, not_sent, refused, translating
from .keys import Keys

log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


# refs of a subject's index a withdrawal's deletion takes per script (lua/purge_lib.lua):
# about 2,000 XDELs, a few milliseconds of the server's time
PURGE_STEP = 2000
# a pending purge whose latest step is this old lost its gateway (a step takes milliseconds)
PURGE_STALL_MS = 60_000


@dataclass(frozen=True)
class Purge:
    """A withdrawal's deletion still pending: whose, and its name (the withdrawal's time in
    ms, the store's clock), which finds its record in the group's pending purges
    (lua/purge_lib.lua: the record itself holds the rank its next step starts at and the
    purposes, as they are now)."""

    sid: str
    at_ms: int

    @classmethod
    def parse(cls, member: str) -> Purge | None:
        """``<sid> <withdrawal ms> <rank> <purpose>...``, or None for anything else."""
        parts = member.split(" ")
        if len(parts) < 4 or not parts[0] or not parts[3]:
            return None
        # (isdigit takes "²"; a number past 15 digits is not one the scripts read exactly)
        if not all(p.isascii() and p.isdigit() and len(p) <= 15 for p in parts[1:3]):
            return None
        return cls(parts[0], int(parts[1]))


def consent_record(raw: Mapping[str, str]) -> ConsentRecord:
    """The consent hash as the core sees it."""
    levels: dict[str, int] = {}
    versions: dict[str, str] = {}
    times: dict[str, str] = {}
    left: dict[str, str] = {}
    for name, value in raw.items():
        prefix, _, purpose = name.partition(":")
        if not purpose:
            continue
        if prefix == "g":
            levels[purpose] = int(value or 0)
        elif prefix == "v":
            versions[purpose] = value
        elif prefix == "t":
            times[purpose] = value
        elif prefix == "ch":
            left[purpose] = value
    return ConsentRecord(
        levels=MappingProxyType(levels),
        versions=MappingProxyType(versions),
        times=MappingProxyType(times),
        version=raw.get("version"),
        updated=raw.get("updated"),
        head=raw.get("head", ""),
        length=int(raw.get("n") or 0),
        receipt=raw.get("receipt"),
        left=MappingProxyType(left),
    )


def change_fields(change: ConsentChange) -> list[str]:
    """A ``ConsentChange`` as the consent hash's field/value pairs."""
    out = ["updated", change.at]
    if change.decides:
        out += ["version", change.version]
    for purpose, level in change.levels.items():
        out += [
            "g:" + purpose,
            str(level),
            "v:" + purpose,
            change.version,
            "t:" + purpose,
            change.at,
        ]
    for channel in change.leaves:
        out += ["ch:" + channel, change.at]
    return out


def ledger_entry(raw: str | None) -> dict[str, str] | None:
    """One ledger entry as the list holds it (a JSON object of strings); {} when damaged."""
    if raw is None:
        return None
    try:
        data = _decode(raw)
    except msgspec.DecodeError:
        return {}
    return data if isinstance(data, dict) else {}


class ConsentStorage:
    """The consent half of ``RedisStorage`` (a mixin: ``r``, ``keys``... are set there)."""

    r: Client
    keys: Keys
    lifetimes: Lifetimes
    limits: Limits | None
    aof_timeout_ms: int
    _consent_script: Any
    _purge_script: Any
    _take_script: Any
    compactor: Any  # compaction.Compactor: erased values leave the store's files
    activity: tuple[str, ...]  # the purposes whose events the audience index reads
    waitaof_by_node: dict[str, bool]  # per server, once it answered a WAITAOF

    @translating
    def read_consent(self, sid: str) -> ConsentRecord:
        return consent_record(cast("dict[str, str]", self.r.hgetall(self.keys.consent(sid))))

    @translating
    def append_consent(
        self,
        sid: str,
        *,
        expected_head: str,
        receipt_id: str,
        entry: Mapping[str, str],
        change: ConsentChange,
        grants: bool,
        limited: bool = False,
        suppress: Sequence[str] = (),
        unsuppress: Sequence[str] = (),
        audience: str = "",
        purge: Sequence[str] = (),
    ) -> Appended:
        """Append one ledger entry and update the state hash atomically; the entry's position,
        and the stream entries of the subject's parts deleted per purpose in ``purge`` (the
        purposes the entry withdraws: their data goes in the same step, ``lua/consent.lua``).

        ``grants``: the new state grants an optional purpose (the subject may hold data, so
        its ledger is kept the longer lifetime). ``limited``: the write counts against the
        subject's ledger bucket. ``suppress`` / ``unsuppress``: channels whose suppression
        list (the subject's group's) the subject joins / leaves in the same step.
        ``audience``: "in" / "out" when the counted purpose is granted / withdrawn here (the
        audience index is told in the same step; "out" marks the person out of every count).
        Raises LedgerConflict when the ledger moved since ``expected_head`` was read,
        OverLimit when the bucket is empty, and NotDurable when the server did not confirm
        the write durable in time.
        """
        bucket = self.limits.ledger_writes if self.limits and limited else NO_LIMIT
        life = self.lifetimes
        args: list[Any] = [
            expected_head,
            receipt_id,
            entry["hash"],
            _encode(entry),
            sid,
            bucket.burst,
            bucket.per_hour,
            life.holding_ms,
            life.bare_ms,
            "1" if grants else "0",
            life.suppression_ms,
            len(suppress),
            audience,
            " ".join(purge),
            "1" if set(purge) & set(self.activity) else "0",
            PURGE_STEP,
            self.keys.streams_of(sid),
            *change_fields(change),
        ]
        k = self.keys
        keys = [k.consent(sid), k.ledger(sid), k.index(sid)]
        keys += [k.audience_of(sid, "chg"), k.audience_of(sid, "marks"), k.subject(sid, "account")]
        keys.append(k.purges(sid))
        keys += [self.keys.suppression(channel, sid) for channel in suppress]
        keys += [self.keys.suppression(channel, sid) for channel in unsuppress]
        # The script and the confirmation go to the server holding the subject's slot in one
        # round trip. On a cluster whose slots moved (a failover) the node answers MOVED, or
        # refuses the connection: nothing ran there, so the slots are learnt again and the
        # write sent once more (a receipt already written answers 'dup', and its WAIT covers
        # the first write). A timeout or a connection lost mid-request is not resent: the
        # script may have run without its confirmation, so the answer is 503.
        cluster = isinstance(self.r, RedisCluster)
        for attempt in range(2 if cluster else 1):
            node = node_of(self.r, keys[0])
            confirms = self._confirmations(node)
            pipe = node.pipeline(transaction=False)
            self._consent_script(keys=keys, args=args, client=pipe)
            for confirm in confirms:
                pipe.execute_command(*confirm)  # type: ignore[no-untyped-call]
            try:
                results = pipe.execute(raise_on_error=False)
            except RedisConnectionError as e:
                if attempt or not cluster or not not_sent(e):
                    raise
                self._remap()
                continue
            outcome = results[0]
            if cluster and not attempt and isinstance(outcome, (MovedError, AskError)):
                self._remap()
                continue
            break
        if isinstance(outcome, Exception):
            raise outcome
        status, value, *purged = outcome
        if status == "conflict":
            raise LedgerConflict(value)
        if status == "limited":
            raise OverLimit("ledger_writes", value)
        deleted: dict[str, int] = {}
        if purged:
            following, member, *counts = purged
            deleted = _counts(counts)
            record = Purge.parse(member) if int(following) >= 0 else None
            if record is not None:
                self._purge_rest(record, deleted, claim=None)
        if any(deleted.values()):
            # the deleted values leave the store's files too, as an erasure's do (compaction)
            self.compactor.record_erasure()
        for answer, confirm in zip(results[1:], confirms, strict=True):
            self._check_durable(answer, confirm, _name(node))
        # what this entry withdraws (the subject's earlier purges it took in are not its own)
        return Appended(int(value), {p: deleted.get(p, 0) for p in purge})

    def _purge_rest(self, purge: Purge, deleted: dict[str, int], *, claim: int | None) -> int:
        """A withdrawal's deletion carried on from the rank its record holds in the subject's
        index, ``PURGE_STEP`` refs a step (each its own script: no subject holds the server
        for long), to the index's end; the entries deleted per purpose are added to
        ``deleted``.

        The purge is recorded among its group's pending ones until its last step, each step
        renewing the record and working from it as it is then (lua/purge.lua): a gateway that
        dies between steps leaves it to ``finish_purges``; a new grant of one of its purposes
        bounds that purpose (what the grant stores stays, what was stored before still goes);
        another withdrawal of the subject takes the purge into its own record, which the
        withdrawal's own gateway then steps through too; an erasure takes it away, and then
        these steps stop. ``claim``: None for the withdrawal's own gateway; a sweep's ms, and
        then nothing is done unless the record's latest step is at least that old (or stamped
        well ahead of the store's clock). Returns -1 (done), -2 (the record is gone: nothing
        more to do here) or -3 (not claimed: in progress).
        """
        keys = [self.keys.index(purge.sid), self.keys.purges(purge.sid)]
        first = "" if claim is None else str(claim)
        following = 0
        at = purge.at_ms
        while following >= 0:
            following, *counts = self._purge_script(
                keys=keys, args=[purge.sid, at, PURGE_STEP, first]
            )
            following = int(following)
            if following == -2:  # the record is gone
                if not (counts and claim is None):
                    break
                # A later withdrawal of the subject took this purge into its own record: the
                # data of this one's purposes goes with that one's steps, which this gateway
                # takes too, rather than answer before it went (found by review: a withdrawal
                # answered 201 while its purpose's entries waited a minute for the sweep).
                at, following = int(counts[0]), 0
                continue
            first = ""  # the claim holds from its first step on: the record is renewed
            for p, n in _counts(counts).items():
                deleted[p] = deleted.get(p, 0) + n
        return following

    @translating
    def finish_purges(self, stall_ms: int = PURGE_STALL_MS, limit: int = 16) -> dict[str, int]:
        """Finish the withdrawal deletions whose gateway stopped between steps (died, lost
        the store): those whose latest step is ``stall_ms`` old, at most ``limit`` a group a
        call. Any gateway may run it; each purge is claimed in the store, so two sweeps never
        work on one. The entries deleted per purpose."""
        # Oldest first (scored by their latest step, on the store's clock, which the claim
        # reads): a group whose first is not stalled has none stalled.
        pipe: Any = self.r.pipeline(transaction=False)
        for name in self.keys.all_purges():
            pipe.zrange(name, 0, limit - 1)
        deleted: dict[str, int] = {}
        for members in pipe.execute():
            for member in members:
                purge = Purge.parse(member)
                if purge is None:  # not ours to read: left as it is, and said once a sweep
                    log.warning("a pending purge the gateway cannot read: %r", member)
                    continue
                try:
                    following = self._purge_rest(purge, deleted, claim=stall_ms)
                except ResponseError as e:
                    if refused(e):  # the store cannot serve now: the sweep stops
                        raise
                    # a record the scripts cannot work from: said each sweep, and the
                    # others are still finished (found by review: it ended every sweep)
                    log.warning("a pending purge failed: %r: %s", member, e)
                    continue
                if following == -3:
                    break  # in progress; the group's others had a step later still
        if any(deleted.values()):
            log.warning(
                "finished withdrawal deletions a gateway left: %s",
                ", ".join(f"{p} {n}" for p, n in deleted.items() if n),
            )
            self.compactor.record_erasure()
        return deleted

    def _remap(self) -> None:
        """Learn the cluster's slots again (after a failover)."""
        assert isinstance(self.r, RedisCluster)
        self.r.nodes_manager.initialize()
        self.__dict__.pop("_replica_cache", None)

    # ------------------------------------------------------------------ durability
    def _confirmations(self, node: redis.Redis) -> list[list[Any]]:
        """The commands that confirm a write durable on ``node``: its own fsync (``WAITAOF 1
        0``, unless the server turned out to lack it) and, when it has replicas, a replica's
        copy (``WAIT 1``), so the replica a failover promotes holds every acknowledged write.

        ``WAIT`` rather than ``WAITAOF 1 1``: a replica with ``appendfsync everysec`` answers
        a fsync only at its next second, so ``WAITAOF 1 1`` took over the 1 s timeout on the
        test cluster; a replica's fsync would add nothing to a failover (the master's own
        file and the replica's memory already hold the write)."""
        out: list[list[Any]] = []
        if self.waitaof_by_node.get(_name(node)) is not False:
            out.append(["WAITAOF", 1, 0, self.aof_timeout_ms])
        if self._replicas(node):
            out.append(["WAIT", 1, self.aof_timeout_ms])
        return out

    def _replicas(self, node: redis.Redis) -> int:
        """How many replicas ``node`` has (looked up once a minute per server)."""
        cache: dict[str, tuple[float, int]] = self.__dict__.setdefault("_replica_cache", {})
        name = _name(node)
        found = cache.get(name)
        if found is not None and time.monotonic() - found[0] < 60:
            return found[1]
        try:
            count = int(node.info("replication").get("connected_slaves", 0))
        except redis.RedisError:
            count = 0
        cache[name] = (time.monotonic(), count)
        return count

    def _check_durable(self, answer: Any, command: list[Any], node: str) -> None:
        """Raise NotDurable unless ``answer`` confirms the write. A server without WAITAOF
        (Redis < 7.2) is remembered: its AOF is relied on, and a replica still confirms."""
        if isinstance(answer, ResponseError):
            msg = str(answer).lower()
            if command[0] == "WAITAOF" and ("unknown command" in msg or "appendonly" in msg):
                if self.waitaof_by_node.get(node) is not False:
                    log.info(
                        "the store at %s cannot confirm fsync (WAITAOF: %s); relying on its AOF",
                        node,
                        answer,
                    )
                self.waitaof_by_node[node] = False
                return
            raise answer
        if isinstance(answer, Exception):
            raise answer
        if command[0] == "WAIT":
            if int(answer) < 1:
                raise NotDurable("the consent was written but no replica confirmed it in time")
            return
        self.waitaof_by_node[node] = True
        if int(answer[0]) < 1:
            raise NotDurable("the consent was written but its fsync was not confirmed in time")

    # ------------------------------------------------------------------ the ledger
    @translating
    def ledger_page(self, sid: str, offset: int, limit: int) -> LedgerPage:
        """Up to ``limit`` ledger entries from position ``offset`` (0-based), in one round
        trip with what checking them needs (see LedgerPage)."""
        key = self.keys.ledger(sid)
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.keys.consent(sid), "n", "head")
        pipe.llen(key)
        pipe.lrange(key, offset, offset + max(limit, 1) - 1)
        pipe.lindex(key, max(offset - 1, 0))
        (n, head), length, raw, before = pipe.execute()
        entries = [ledger_entry(item) or {} for item in raw[: max(limit, 0)]]
        return LedgerPage(
            entries,
            offset + 1,
            ledger_entry(before) if offset > 0 else None,
            length,
            int(n or 0),
            head or "",
        )

    @translating
    def ledger_around(self, sid: str, seq: int) -> LedgerPage:
        """Entries ``seq - 1`` to ``seq + 1`` of a subject's ledger (what checking one entry's
        place needs), in one round trip with its length, its last entry (as ``before``) and
        the head the consent state records: a few entries whatever the ledger's length."""
        key = self.keys.ledger(sid)
        first = max(seq - 1, 1)
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.keys.consent(sid), "n", "head")
        pipe.llen(key)
        pipe.lrange(key, first - 1, seq)
        pipe.lindex(key, -1)
        (n, head), length, raw, last = pipe.execute()
        entries = [ledger_entry(item) or {} for item in raw]
        return LedgerPage(entries, first, ledger_entry(last), length, int(n or 0), head or "")

    # ------------------------------------------------------------------ address buckets
    @translating
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

    @translating
    def take_new_subject(self, address_key: str) -> None:
        """Take a token from the new-subjects bucket of a client address (its keyed hash);
        OverLimit when it is empty. Nothing happens without limits."""
        if self.limits is not None:
            self._take(address_key, [("new_subjects", self.limits.new_subjects)])

    def _take(self, address_key: str, buckets: list[tuple[str, Bucket]]) -> None:
        keys = [self.keys.address(address_key, name) for name, _ in buckets]
        args: list[Any] = []
        for _, bucket in buckets:
            args += [bucket.burst, bucket.per_hour, 1]
        answer = self._take_script(keys=keys, args=args)
        if answer != 0:
            position, wait_ms = answer
            raise OverLimit(buckets[int(position) - 1][0], int(wait_ms))


def _counts(pairs: Sequence[Any]) -> dict[str, int]:
    return {str(p): int(n) for p, n in zip(pairs[::2], pairs[1::2], strict=True)}


def _name(node: redis.Redis) -> str:
    """A server's address, the key of what is learnt about it (replicas, WAITAOF)."""
    kwargs = node.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"
