"""Typed records that cross the storage seam, in both directions.

The store's layout (hash fields, prefixes, key names) never leaves the storage layer: it hands
the core these records and takes these changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A subject's consent state as stored: what it decided, under which policy versions.

    ``levels[p]``: 1 + the index of the policy version ``p`` was granted under, 0 when refused
    (absent: never decided). ``head`` and ``length``: the ledger's last hash and its length.
    ``left``: channels of advertising the subject left on its own (channel -> when)."""

    levels: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    times: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    version: str | None = None  # the last policy version the subject decided under
    updated: str | None = None
    head: str = ""
    length: int = 0
    receipt: str | None = None
    left: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def recorded(self) -> bool:
        """A decision is on record (leaving a channel alone is none)."""
        return self.version is not None

    @property
    def exists(self) -> bool:
        """The subject has a ledger (a first write makes a new subject)."""
        return bool(self.head)


EMPTY = ConsentRecord()


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """What one ledger entry changes in the consent state, written in the same atomic step.

    ``levels``: the new level of each purpose decided (see ``ConsentRecord``), all of them
    decided at ``at`` under ``version``; ``decides``: whether the entry answers the banner
    (an unsubscribe does not); ``leaves``: channels left now."""

    at: str
    version: str
    levels: Mapping[str, int]
    decides: bool = True
    leaves: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RetentionRun:
    """A retention run: when it ended (ms), the stream entries each purpose lost, and how many
    runs the store has seen."""

    at_ms: int
    removed: Mapping[str, int]
    runs: int


@dataclass(frozen=True, slots=True)
class Appended:
    """A ledger entry written: its position, and per purpose withdrawn by it the stream
    entries holding the subject's parts of that purpose that were deleted in the same step."""

    position: int
    deleted: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """Entries ``first``... of a subject's ledger (decoded), the entry just before them (to
    check the link; for ``ledger_around``, the ledger's last entry), how many entries it
    holds, and the head the consent state records."""

    entries: list[dict[str, str]]
    first: int
    before: dict[str, str] | None
    length: int
    head_length: int
    head_hash: str


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: ``burst`` tokens at most, ``per_hour`` flowing back."""

    burst: int
    per_hour: int


NO_LIMIT = Bucket(0, 0)


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
    index_ms: int  # the index of a subject's event parts: the longest retention


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure removed: stream entries holding the subject's parts, its own keys
    (consent, ledger, dedup, index, SMS codes), its saved logins; and in detail, for its
    receipt: the ledger's entries, the event ids remembered, its SMS codes and hashed numbers,
    its link to an account and that account's traits (when it was the last subject linked),
    and whether the audience index was told to take its person out of every count."""

    event_entries: int
    keys: int
    saved_logins: int
    consent_state: bool = False
    ledger_entries: int = 0
    event_ids: int = 0
    sms_codes: int = 0
    account_link: bool = False
    account_traits: bool = False
    audience_person: bool = False

    @property
    def anything(self) -> bool:
        return bool(self.event_entries or self.keys or self.saved_logins)


@dataclass(frozen=True, slots=True)
class Suppressed:
    """One entry of a senders' suppression list: who, and when (ms) they left."""

    subject: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class LoginRecord:
    """A saved login as kept: whose, the sealed account, its rotations and times (ms)."""

    selector: str
    subject: str
    sealed: str
    generation: int
    issued_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    name: str
    scopes: tuple[str, ...]
    created: str
    digest: str = ""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """What ``/healthz`` says of the store."""

    reachable: bool
    problem: str = ""  # why not, when not
    durability: str = "unknown"  # "waitaof", "aof-unconfirmed" or "unknown"
    replicas: str = "none"  # "wait" when consent writes wait for a replica


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One entry of the audience index's feed: a stored request's event parts of a purpose the
    index reads (``kind`` "events"), or a change the index follows: "consent" (the subject's
    decision on the counted purpose changed), "link" / "unlink" (to / from ``account``),
    "traits" (``account``'s traits changed), "erase" (the subject was erased: ``person``, its
    own number if it had one, and ``account``, the account it was linked to).

    ``shard`` and ``ref`` say where it came from (to acknowledge it), ``ms`` when it was
    stored."""

    shard: int
    ref: str
    ms: int
    kind: str
    sid: str = ""
    events: str = "[]"  # the entry's parts, a JSON array as stored
    context: str = ""  # the request context's fields of the entry's purpose, a JSON object
    account: str | None = None
    person: int | None = None


@dataclass(frozen=True, slots=True)
class ShardState:
    """A shard's saved bitmaps (serialized) at ``generation``: all of them (``complete``: any
    other a reader holds for the shard is gone), or those changed since a generation."""

    generation: int
    bitmaps: Mapping[str, bytes]
    complete: bool = True
