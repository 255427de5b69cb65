"""The storage seam: what the core asks of a store, as interfaces the storage layer implements.

Like Flask's ``SessionInterface``, the core names what it needs and never how it is kept: it
hands over typed changes and gets typed records back (``records.py``), and every failure of
the store arrives as ``StorageUnavailable`` (503) or as one of the outcomes in ``errors.py``.
``gateway.storage`` implements these on Redis, Valkey and Redis Cluster; nothing else does,
and nothing outside it imports redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .parts import EventPart, Grouped
from .records import (
    ApiKeyRecord,
    Appended,
    ConsentChange,
    ConsentRecord,
    Erased,
    FeedEntry,
    LedgerPage,
    LoginRecord,
    RetentionRun,
    ShardState,
    StoreHealth,
    Suppressed,
)

ANY_HEAD = "*"  # store_events: the caller read the consent state during this request

# A request's events, for the store: grouped by purpose (``split.Split``), or each event's id
# and parts.
Events = Grouped | Sequence[tuple[str, Sequence[EventPart]]]
# Per event: None for a duplicate, else the purposes whose parts were stored.
Outcomes = list[tuple[str, ...] | None]


class ConsentStore(Protocol):
    def read_consent(self, sid: str) -> ConsentRecord: ...

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
        """Append one ledger entry and apply ``change``, atomically; the entry's position.
        ``audience``: "in" / "out" when the purpose audiences count is granted / withdrawn
        (a withdrawal takes the person out of every count in the same step). ``purge``: the
        purposes withdrawn by the entry, whose stored event parts of the subject are deleted
        in the same step (``Appended.deleted``).
        Raises LedgerConflict (the ledger moved since ``expected_head``), OverLimit,
        NotDurable."""
        ...

    def finish_purges(self) -> dict[str, int]:
        """Finish the withdrawal deletions a gateway left between steps (it died, or lost
        the store); the stream entries deleted per purpose. Any gateway may run it, often."""
        ...

    def ledger_page(self, sid: str, offset: int, limit: int) -> LedgerPage: ...

    def ledger_around(self, sid: str, seq: int) -> LedgerPage: ...

    def take_address(self, address_key: str, *, new_subject: bool = False) -> None: ...

    def take_new_subject(self, address_key: str) -> None: ...


class EventStore(Protocol):
    def store_events(
        self,
        sid: str,
        events: Events,
        min_grant: Mapping[str, int],
        now_ms: int,
        expect_head: str = ANY_HEAD,
        *,
        minted_ids: bool = False,
        contexts: Mapping[str, bytes] | None = None,
    ) -> Outcomes:
        """Store each event's parts whose purpose is granted on the ledger right now.
        Raises StaleConsent (its ``state`` a ConsentRecord) and OverLimit."""
        ...

    def subject_events(
        self, sid: str, rank: int, skip: int, limit: int
    ) -> tuple[list[tuple[str, dict[str, Any]]], tuple[int, int], bool]: ...

    def trim_before(self, purpose: str, min_id_ms: int) -> int: ...

    def run_retention(
        self, every_ms: int, work: Callable[[], Mapping[str, int]], *, force: bool = False
    ) -> RetentionRun | None:
        """``work()`` once per ``every_ms`` across every process sharing the store (or now, if
        ``force``): the run, recorded, or None when it was not this caller's to do."""
        ...

    def last_retention(self) -> RetentionRun | None: ...


class SubjectStore(Protocol):
    def erase_subject(self, sid: str) -> Erased: ...

    def suppressed_since(self, channel: str, since_ms: int, limit: int) -> list[Suppressed]: ...

    def suppressions_of(self, sid: str, channels: Sequence[str]) -> dict[str, int | None]: ...

    def dedup_count(self, sid: str) -> int: ...


class LoginStore(Protocol):
    """Saved-login records and their indexes (``savedlogin.py`` makes and checks tokens)."""

    def create(
        self, selector: str, record: Mapping[str, str | int], account_mac: str, index_ttl_ms: int
    ) -> None: ...

    def read(self, selector: str, *fields: str) -> list[str | None]: ...

    def resume(
        self, selector: str, generation: str, nonce: str, resealed: str, new_mac: str
    ) -> list[str]:
        """Move a login to its next generation if the token is of the current one, on the
        store's clock: ['ok', generation, expires, old account hash], ['reused'],
        ['expired'] or ['unknown']."""
        ...

    def move_account(self, selector: str, old_mac: str, new_mac: str, ttl_ms: int) -> None: ...

    def of_subject(self, sid: str) -> list[str]: ...

    def of_accounts(self, account_macs: Sequence[str]) -> list[str]: ...

    def revoke(self, selectors: Sequence[str]) -> int: ...

    def records(self, sid: str) -> list[LoginRecord]:
        """The subject's saved logins still kept (none that expired since being listed)."""
        ...


class AccountStore(Protocol):
    """Which platform account a subject is linked to, and the accounts' coarse traits, by
    the account's keyed hash (``accounts.py``): a link ends ``ttl_ms`` after it was last
    made, the traits with the account's newest link."""

    def link(self, account_mac: str, sid: str, ttl_ms: int) -> str | None:
        """Link ``sid`` to the account; the account it was linked to before, if another."""
        ...

    def unlink(self, account_mac: str, sid: str) -> bool:
        """Whether ``sid`` was linked to the account. An account left with no subject loses
        its traits."""
        ...

    def leave(self, account_mac: str, sid: str) -> tuple[bool, bool]:
        """``unlink``: whether ``sid`` was linked, and whether the account's traits went with
        it (it was the account's last subject)."""
        ...

    def account_of(self, sid: str) -> str | None: ...

    def has_data(self, account_mac: str) -> bool:
        """Whether anything is kept under the account's hash (subjects or traits)."""
        ...

    def set_traits(
        self, account_mac: str, values: Mapping[str, str], removed: Sequence[str]
    ) -> dict[str, str]:
        """Set and remove traits; the account's traits afterwards. ``NotLinked`` when no
        subject is linked to the account (traits of nobody are not kept); they live as long
        as the account's newest link."""
        ...

    def traits(self, account_mac: str) -> dict[str, str]: ...

    def subjects(self, account_mac: str) -> list[str]:
        """The subjects linked to the account now."""
        ...


class CodeStore(Protocol):
    """SMS unsubscribe codes and the keyed hashes of the numbers they were sent to."""

    def claim_code(self, code: str, sid: str, ttl_s: int) -> bool: ...

    def remember_phone(self, phone_mac: str, sid: str, ttl_s: int) -> None: ...

    def list_for(self, sid: str, items: Sequence[tuple[str, str]], ttl_s: int) -> None: ...

    def subject_of_code(self, code: str) -> str | None: ...

    def subject_of_phone(self, phone_macs: Sequence[str]) -> str | None: ...

    def held(self, sid: str) -> list[tuple[str, str, int]]:
        """The subject's codes and phone hashes still its own: (kind, value, expiry ms)."""
        ...

    def erase_subject(self, sid: str) -> int: ...


class SessionStore(Protocol):
    """The marketers' dashboard's sessions: a random id -> the API key's digest, for a time."""

    def put(self, session_id: str, digest: str, ttl_ms: int) -> None: ...

    def get(self, session_id: str) -> str | None: ...

    def delete(self, session_id: str) -> None: ...


class KeyStore(Protocol):
    """Server API keys, by the SHA-256 of the key."""

    def add(self, record: ApiKeyRecord) -> None: ...

    def find(self, digest: str) -> ApiKeyRecord | None: ...

    def all(self) -> list[ApiKeyRecord]: ...

    def remove(self, digests: Sequence[str]) -> int: ...


class Storage(ConsentStore, EventStore, SubjectStore, Protocol):
    """Everything the gateway keeps. One object per application; thread-safe."""

    # Read-only to the core (a store's own classes may be narrower: RedisKeyStore...).
    @property
    def logins(self) -> LoginStore: ...

    @property
    def codes(self) -> CodeStore: ...

    @property
    def accounts(self) -> AccountStore: ...

    @property
    def apikeys(self) -> KeyStore: ...

    @property
    def sessions(self) -> SessionStore: ...

    @property
    def audiences(self) -> AudienceStore: ...

    @property
    def exports(self) -> ExportStore: ...

    def health(self) -> StoreHealth: ...

    def erasure_files(self) -> str:
        """``"ok"``, or why erased values may stay in the store's files."""
        ...

    def ready(self) -> None:
        """Raise ``StorageUnavailable`` unless the store is known to be laid out as this
        gateway writes it; checked once (the first call that reaches it), then free."""
        ...

    def start_housekeeping(self) -> None:
        """Start the store's own periodic work (after erasures, the AOF rewrite) in this
        process; cheap to call again."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class QueryState:
    """What the store keeps for an API key and the question it asks: the answers given to it
    today (JSON), by the true counts they were given for; the key's recent released queries
    (newest first, ``keep`` and ``ttl_s`` left out; a count of -1: not known, as kept by an
    older version); the ε it spent this month; and, when asked for, what
    ``AudienceStore.generations`` returns, read in the same round trip."""

    answers: dict[str, str]
    recent: list[RecentQuery]
    spent: float
    index: tuple[list[int], list[str]] | None = None


@dataclass(frozen=True, slots=True)
class QueryEnd:
    """How a query ends (``AudienceStore.finish_query``). ``token``: the lock holder's ("":
    none held); ``epsilon``: to spend from ``budget`` (0: none); ``answer``: to keep for the
    day as the answer to ``question`` for the true count(s) ``counts`` (None: none);
    ``recent``: to remember for the difference check; ``audit``: the entry to append (None:
    none), entries older than ``audit_keep_ms`` dropped."""

    question: str
    month: str
    counts: str = ""
    token: str = ""
    epsilon: float = 0.0
    budget: float = 0.0
    answer: str | None = None
    answer_ttl_s: int = 0
    recent: RecentQuery | None = None
    audit: str | None = None
    audit_keep_ms: int = 0


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """``finish_query``'s result: "ok" (all done), "twin" (an answer was kept already, by a
    query whose lock lapsed: nothing done but the release; ``answer`` is the kept one) or
    "budget" (not enough left: nothing done but the release); ``spent``: the month's ε spent
    afterwards."""

    outcome: str
    spent: float
    answer: str | None = None


@dataclass(frozen=True, slots=True)
class RecentQuery:
    """A released query (canonical JSON) to remember for the difference check, with the true
    count of people it was answered for: kept ``keep`` deep (the query once, its latest
    count), ``ttl_s``."""

    query: str
    count: int
    keep: int = 0
    ttl_s: int = 0


class AudienceStore(Protocol):
    """What the audience index keeps in the store, per shard (a slot group), and what its
    queries keep per API key. People are named by a *person key*: ``s:<sid>`` (a subject no
    account is linked to) or ``a:<account mac>``; each has a number in its shard."""

    shards: int

    # -------------------------------------------------------------- the indexer's
    def take_lease(self, owner: str, ttl_ms: int) -> str:
        """Hold (or renew) the indexer's lease: "new" (taken now: reload), "kept", or ""
        (another indexer holds it)."""
        ...

    def basis(self) -> str | None:
        """What the saved index's consent was worked out with (``Indexer.basis``)."""
        ...

    def set_basis(self, basis: str) -> None: ...

    def release_lease(self, owner: str) -> None:
        """Give the lease up (a stopping gateway: another takes over at once)."""
        ...

    def read_feed(self, count: int, *, pending: bool) -> list[FeedEntry]:
        """Up to about ``count`` entries of the feed not yet acknowledged, oldest first.
        ``pending``: those delivered before and never acknowledged (after a crash), first."""
        ...

    def ack_feed(self, entries: Sequence[FeedEntry]) -> None:
        """Acknowledge entries whose effect is saved; the withdrawal marks they left go."""
        ...

    def links(self, sids: Sequence[str]) -> dict[str, str | None]:
        """The account (mac) each subject is linked to, if any, in one round trip."""
        ...

    def numbers(self, persons: Sequence[str], *, allocate: bool) -> dict[str, int]:
        """Each person key's number (made for those without one when ``allocate``)."""
        ...

    def all_persons(self) -> Iterator[tuple[str, int]]:
        """Every person key with a number, with it (a rebuild's list)."""
        ...

    def load_shard(self, shard: int) -> ShardState: ...

    def save_shard(self, shard: int, changed: Mapping[str, bytes], dropped: Sequence[str]) -> int:
        """Save a shard's changed bitmaps and drop others, as one step; its new generation."""
        ...

    def reset(self) -> None:
        """Forget the saved bitmaps and read the feed again from its start (a rebuild)."""
        ...

    # -------------------------------------------------------------- readers
    def generations(self) -> tuple[list[int], list[str]]:
        """Each shard's generation, and every pending withdrawal mark's person: its key, or
        ``#<number>`` (an erased subject's, whose key is forgotten)."""
        ...

    def shard_bitmaps(self, shard: int, after: int) -> ShardState:
        """The shard's bitmaps changed after generation ``after`` (all: -1)."""
        ...

    # -------------------------------------------------------------- queries
    def begin_query(
        self, key: str, question: str, month: str, token: str, lock_ms: int, *, index: bool
    ) -> QueryState | None:
        """Take the key's query lock (held by ``token``, lapsing after ``lock_ms``) and read,
        in the same round trip, what the query needs (with ``generations()`` if ``index``):
        None when another query of the key holds the lock."""
        ...

    def finish_query(self, key: str, end: QueryEnd) -> QueryOutcome:
        """End a query in one round trip: spend, keep the answer, add to the recent queries,
        append the audit entry and release the lock (each only if ``end`` asks), all or
        nothing."""
        ...

    def audit_since(self, since_ms: int, limit: int) -> list[str]: ...

    def own_latest(self, key: str) -> list[str]:
        """The key's own last 20 audit entries, newest first (kept beside the log by the
        script that appends to it)."""
        ...

    def spent(self, key: str, month: str) -> float:
        """The ε the key spent in ``month`` (``YYYY-MM``)."""
        ...


# ---------------------------------------------------------------------- exports
# One stream entry of a purpose as an export reads it: the subject, when it was stored (ms),
# its event parts with the entry's context merged in.
StoredEntry = tuple[str, int, list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ExportCommit:
    """How an export ended in the store (``ExportStore.commit``): ``outcome`` "exported" (its
    people added to the recipient's year, the audit entry appended) or "ceiling" (refused:
    nothing added, the refusal appended); ``new_people``: those the recipient had not received
    this year; ``year_people``: the recipient's people this year, with them (had it gone
    through); ``entry``: the audit entry's id."""

    outcome: str
    new_people: int
    year_people: int
    entry: str


class ExportStore(Protocol):
    """What ``gateway export`` reads and keeps (``core/export.py``): a purpose's stored entries,
    the consent of their subjects, and per recipient and calendar year the pseudonyms it
    received, with the audit log of every export."""

    def purpose_entries(
        self, purpose: str, since_ms: int, until_ms: int, count: int
    ) -> Iterator[list[StoredEntry]]:
        """Every entry of the purpose stored from ``since_ms`` to ``until_ms`` (inclusive),
        each slot group's stream in turn, a page of up to ``count`` entries at a time."""
        ...

    def consents(self, sids: Sequence[str]) -> dict[str, ConsentRecord]:
        """Each subject's consent record (empty for one with none), in one round trip."""
        ...

    def stage(self, export_id: str, pseudonyms: Sequence[str]) -> None:
        """Keep these pseudonyms as the export's people until it commits or is discarded (they
        lapse by themselves a day later)."""
        ...

    def commit(
        self,
        export_id: str,
        recipient: str,
        year: int,
        ceiling: int,
        keep_until_ms: int,
        entry: Mapping[str, str],
        sha256: str,
    ) -> ExportCommit:
        """In one step: count the staged people the recipient had not received in ``year``;
        unless that brings its year to ``ceiling`` or more, add them (the year's set kept until
        ``keep_until_ms``) and append ``entry`` with ``sha256`` to the audit log; else append
        ``entry`` as a refusal. The staged people go either way."""
        ...

    def discard(self, export_id: str) -> None:
        """Forget the staged people of an export that failed."""
        ...

    def note(self, entry: Mapping[str, str]) -> str:
        """Append an entry (a refusal before anything was read) to the audit log; its id."""
        ...

    def audit_since(self, since_ms: int, limit: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``limit`` audit entries from ``since_ms`` on, oldest first: (id, fields)."""
        ...
