"""Keeping the audience index current: one indexer at a time (a lease in the store) reads the
feed (the activity purposes' streams and each shard's changes, through a consumer group),
updates its shards' bitmaps in memory, saves the changed ones, then acknowledges what it read.

Nothing is lost or counted twice after a crash: entries are acknowledged only once the
bitmaps they changed are saved, so a new indexer reads again exactly the entries whose effect
may not be saved (the group's pending entries), and reading one again changes nothing, since
the bitmaps are sets and every change is applied from the store's current state (a
person's consent, an account's traits), not from a difference.

People, not devices: a subject linked to an account counts as the account (``a:<mac>``);
when it links, what the index holds of it moves to the account; the account's consent is the
latest decision of its subjects on the counted purpose. An erasure takes the subject's own
person and its account's out of everything (the account comes back with its other subjects'
next activity, without what the erased one did).
"""

from __future__ import annotations

import contextlib
import logging
import operator
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import msgspec
from pyroaring import BitMap

from ..catalogue import AudienceRules, Catalogue
from ..errors import StorageUnavailable
from ..ports import AccountStore, AudienceStore, ConsentStore
from ..records import ConsentRecord, FeedEntry
from .index import (
    CONSENT,
    DAY,
    DERIVED_FROM_EVENTS,
    SEEN,
    Bitmaps,
    PersonSpace,
    active,
    from_events,
    from_trait,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
LEASE_MS = 30_000  # another indexer takes over this long after one stops renewing
BATCH = 2_000  # feed entries per step (a batch of 500 events is one entry per purpose)


def _today() -> date:
    return datetime.now(UTC).date()


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


class Indexer:
    """The audience index's writer. ``step()`` does one round; ``run_until_idle()`` until
    the feed is read (tests, ``gateway audiences rebuild``)."""

    def __init__(
        self,
        store: AudienceStore,
        consents: ConsentStore,
        accounts: AccountStore,
        cat: Catalogue,
        min_grant: Mapping[str, int],
        *,
        batch: int = BATCH,
        today: Callable[[], date] = _today,
        on_save: Callable[[int], None] = lambda memory: None,
        on_read: Callable[[int], None] = lambda entries: None,
    ) -> None:
        if cat.audiences is None:
            raise ValueError("the catalogue has no [audiences] section")
        self.rules: AudienceRules = cat.audiences
        self.store = store
        self.consents = consents
        self.accounts = accounts
        self.space = PersonSpace(store.shards)
        self.min_grant = min_grant[self.rules.consent]
        self.batch = batch
        self.today = today
        self.on_save = on_save
        self.on_read = on_read
        self._lock = threading.Lock()  # one round at a time (the thread, a command, a test)
        self.owner = uuid.uuid4().hex
        self.fields = self.rules.from_fields()
        part = msgspec.defstruct("Part", [(f, Any, None) for f in self.fields])
        self._parts = msgspec.json.Decoder(list[part]).decode  # type: ignore[valid-type]
        self._context = msgspec.json.Decoder(part).decode
        self._getters = [(f, operator.attrgetter(f)) for f in self.fields]
        self.trait_dims = {d.trait.name: d.name for d in self.rules.dimensions.values() if d.trait}
        self.shards: dict[int, Bitmaps] = {}
        self._windows_day: dict[int, date] = {}
        self._changed: dict[int, set[str]] = {}
        self._dropped: dict[int, set[str]] = {}
        self._pending = True  # read what was delivered and never acknowledged, first
        self.leased = False  # whether the last round held the lease

    # ------------------------------------------------------------------ rounds
    def step(self) -> int:
        """Read, apply, save, acknowledge: the number of entries read (0: idle, or another
        indexer holds the lease)."""
        with self._lock:
            try:
                n = self._step()
            except Exception:
                # a round cut short (the store failed): what it read stays unacknowledged,
                # so the next round starts from the saved shards and reads it again
                self.shards.clear()
                self._windows_day.clear()
                self._changed.clear()
                self._dropped.clear()
                self._pending = True
                raise
        self.on_read(n)
        return n

    def catch_up(self, max_s: float = 5.0) -> None:
        """Rounds until the feed is read (or ``max_s`` passed): the periodic job."""
        ends = time.monotonic() + max_s
        while self.step() >= self.batch // 2 and time.monotonic() < ends:
            pass

    def _step(self) -> int:
        lease = self.store.take_lease(self.owner, LEASE_MS)
        self.leased = bool(lease)
        if not lease:
            self.shards.clear()
            return 0
        if lease == "new":  # another indexer may have saved since this one last did
            self.shards.clear()
            self._windows_day.clear()
            self._pending = True
            self._check_basis()
        entries = self.store.read_feed(self.batch, pending=self._pending)
        if self._pending and not entries:
            self._pending = False
            entries = self.store.read_feed(self.batch, pending=False)
        self.apply(entries)
        self._roll_windows()
        self.save()
        self.store.ack_feed(entries)
        return len(entries)

    def run_until_idle(self) -> int:
        """Rounds until the feed is read; RuntimeError if another indexer holds the lease."""
        return self._drain(self.step)

    def _drain(self, step: Callable[[], int]) -> int:
        total = 0
        while True:
            n = step()
            total += n
            if not self.leased:
                raise RuntimeError("another indexer holds the lease")
            if n == 0 and not self._pending:
                return total

    def rebuild(self) -> int:
        """Forget the saved index and make it again from the store: every known person set up
        from its consent and traits, then the whole feed read again. The entries read."""
        with self._lock:
            return self._rebuild()

    def _rebuild(self) -> int:
        if not self.store.take_lease(self.owner, LEASE_MS):
            raise RuntimeError("another indexer holds the lease: stop it first")
        self.store.reset()
        self.shards = {s: Bitmaps() for s in range(self.space.shards)}
        self._windows_day.clear()
        self._changed = {s: set() for s in range(self.space.shards)}
        self._dropped = {s: set(self.store.load_shard(s).bitmaps) for s in self.shards}
        for chunk in _chunks(self.store.all_persons(), 1000):
            # a subject linked to an account now counts as the account, not also as itself
            linked = self.store.links([p[2:] for p, _ in chunk if p.startswith("s:")])
            for person, number in chunk:
                if not (person.startswith("s:") and linked.get(person[2:])):
                    self._set_up(person, number)
            self.store.take_lease(self.owner, LEASE_MS)
        self.store.set_basis(self.basis)
        self._roll_windows()
        self.save()
        self._pending = True
        return self._drain(self._step)

    @property
    def basis(self) -> str:
        """What a person's consent bit was worked out with: the counted purpose and the
        smallest grant that counts (a policy version changing the purpose moves it)."""
        return f"{self.rules.consent}:{self.min_grant}"

    def _check_basis(self) -> None:
        """After a policy version changed the counted purpose, grants made before no longer
        count, without a ledger entry to say so: every person's consent is read again."""
        saved = self.store.basis()
        if saved is not None and saved != self.basis:
            log.warning(
                "audience index: consent counted under %s, now %s: reading every "
                "person's consent again",
                saved,
                self.basis,
            )
            for chunk in _chunks(self.store.all_persons(), 1000):
                for person, number in chunk:
                    if number in self.shard(self.space.shard_of(number)).get(SEEN):
                        self._consent(person, number)
                self.store.take_lease(self.owner, LEASE_MS)
            self.save()
        if saved != self.basis:
            self.store.set_basis(self.basis)

    def memory_bytes(self) -> int:
        return sum(b.memory_bytes() for b in self.shards.values())

    def close(self) -> None:
        """Give the lease up, so that another gateway's indexer takes over without waiting
        for it to lapse."""
        with self._lock:
            if self.leased:
                self.leased = False
                with contextlib.suppress(StorageUnavailable):  # it lapses by itself then
                    self.store.release_lease(self.owner)

    # ------------------------------------------------------------------ state
    def shard(self, shard: int) -> Bitmaps:
        maps = self.shards.get(shard)
        if maps is None:
            state = self.store.load_shard(shard)
            maps = Bitmaps({n: BitMap.deserialize(b) for n, b in state.bitmaps.items()})
            self.shards[shard] = maps
        return maps

    def _add(self, number: int, name: str) -> None:
        shard = self.space.shard_of(number)
        bm = self.shard(shard).get(name)
        if number not in bm:
            bm.add(number)
            self._changed.setdefault(shard, set()).add(name)

    def _discard(self, number: int, name: str) -> None:
        shard = self.space.shard_of(number)
        bm = self.shard(shard).peek(name)
        if bm is not None and number in bm:
            bm.discard(number)
            self._changed.setdefault(shard, set()).add(name)

    def _forget_activity(self, person: str) -> None:
        """A purpose whose events the index reads was withdrawn, and the subject's events of
        it deleted (PIPL art. 47): the values and days derived from events go too. The
        person's other events (another purpose still granted, another subject of its account)
        come back only with its next events: the index undercounts, never overcounts."""
        found = self.store.numbers([person], allocate=False)
        if person not in found:
            return
        number = found[person]
        for name in self.shard(self.space.shard_of(number)).containing(number):
            if name.startswith(DERIVED_FROM_EVENTS):
                self._discard(number, name)

    def _remove_everywhere(self, number: int) -> list[str]:
        shard = self.space.shard_of(number)
        names = self.shard(shard).containing(number)
        for name in names:
            self._discard(number, name)
        return names

    def save(self) -> None:
        moved = bool(self._changed or self._dropped)
        for shard in sorted(set(self._changed) | set(self._dropped)):
            names = self._changed.pop(shard, set())
            dropped = self._dropped.pop(shard, set()) - names
            maps = self.shard(shard)
            changed = {}
            for name in names:
                bm = maps.get(name)
                bm.run_optimize()
                changed[name] = bm.serialize()
            if changed or dropped:
                self.store.save_shard(shard, changed, sorted(dropped))
        if moved:  # sizing tens of thousands of bitmaps is not free: only when they moved
            self.on_save(self.memory_bytes())

    # ------------------------------------------------------------------ the feed
    def apply(self, entries: Iterable[FeedEntry]) -> None:
        entries = sorted(entries, key=lambda e: e.ms)
        sids = {e.sid for e in entries if e.sid and e.kind in ("events", "consent", "forget")}
        linked = self.store.links(sorted(sids)) if sids else {}
        wanted = {_person(e.sid, linked.get(e.sid)) for e in entries if e.kind == "events"}
        numbers = self.store.numbers(sorted(wanted), allocate=True) if wanted else {}
        for e in entries:
            if e.kind == "events":
                person = _person(e.sid, linked.get(e.sid))
                self._events(person, numbers[person], e)
            elif e.kind == "consent":
                self._refresh(_person(e.sid, linked.get(e.sid)), allocate=True)
            elif e.kind == "link" and e.account:
                self._link(e.sid, e.account)
            elif e.kind == "unlink" and e.account:
                self._refresh("a:" + e.account)
                self._refresh("s:" + e.sid)
            elif e.kind == "traits" and e.account:
                self._refresh("a:" + e.account)
            elif e.kind == "forget":
                self._forget_activity(_person(e.sid, linked.get(e.sid)))
            elif e.kind == "erase":
                if e.person is not None:
                    self._remove_everywhere(e.person)
                if e.account:
                    found = self.store.numbers(["a:" + e.account], allocate=False)
                    if found:
                        self._remove_everywhere(found["a:" + e.account])

    def _events(self, person: str, number: int, e: FeedEntry) -> None:
        """Activity on the entry's day, and each dimension value its parts name."""
        if number not in self.shard(self.space.shard_of(number)).get(SEEN):
            self._set_up(person, number)
        day = _day(e.ms)
        age = (self.today() - day).days
        if age < max(self.rules.windows):
            self._add(number, DAY + day.isoformat())
            for w in self.rules.windows:
                if age < w:
                    self._add(number, active(w))
        for name in self._values(e):
            self._add(number, name)

    def _values(self, e: FeedEntry) -> set[str]:
        """The dimension values an entry's parts name (a part's own value of a field, else
        the request context's). Only the fields the index reads are decoded: a 500-event
        entry's parts as dicts, merged with the context, cost 1.7 ms of the indexer's time."""
        try:
            parts = self._parts(e.events)
            context = self._context(e.context) if e.context else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            return set()
        raw: set[tuple[str, Any]] = set()
        for fname, field_of in self._getters:
            try:
                found = set(map(field_of, parts))  # a loop in C: a third of the indexer's time
            except TypeError:  # a list or an object where a string was expected: not a value
                found = {v for v in map(field_of, parts) if v is None or isinstance(v, str)}
            if None in found:
                found.discard(None)
                fallback = getattr(context, fname, None) if context is not None else None
                found.add(fallback)
            raw.update((fname, v) for v in found if isinstance(v, str))
        values: set[str] = set()
        for fname, v in raw:
            for d in self.fields[fname]:
                value = d.normalise(v)
                if value is not None:
                    values.add(from_events(d.name, value))
        return values

    def _set_up(self, person: str, number: int) -> None:
        """A person new to the index: its consent and (an account's) traits, from the store."""
        self._add(number, SEEN)
        self._consent(person, number)
        if person.startswith("a:"):
            self._traits(person[2:], number)

    def _refresh(self, person: str, *, allocate: bool = False) -> None:
        found = self.store.numbers([person], allocate=allocate)
        if person not in found:
            return  # the index holds nothing of it: set up when it is first active
        number = found[person]
        if number not in self.shard(self.space.shard_of(number)).get(SEEN):
            self._set_up(person, number)
            return
        self._consent(person, number)
        if person.startswith("a:"):
            self._traits(person[2:], number)

    def _link(self, sid: str, mac: str) -> None:
        """What the index holds of the subject's own person moves to the account's."""
        account = "a:" + mac
        numbers = self.store.numbers([account, "s:" + sid], allocate=False)
        own = numbers.get("s:" + sid)
        if own is None and account not in numbers:
            return  # nothing held of either: set up when first active
        target = self.store.numbers([account], allocate=True)[account]
        if own is not None:
            for name in self._remove_everywhere(own):
                if name not in (SEEN, CONSENT):
                    self._add(target, name)
        self._refresh(account)

    def _consent(self, person: str, number: int) -> None:
        """The person's consent now: a subject's own, or the latest decision among the
        account's subjects."""
        purpose = self.rules.consent
        if person.startswith("s:"):
            granted = self._granted(self.consents.read_consent(person[2:]))
        else:
            records = [self.consents.read_consent(s) for s in self.accounts.subjects(person[2:])]
            decided = [r for r in records if purpose in r.levels]
            latest = max(decided, key=lambda r: r.times.get(purpose, ""), default=None)
            granted = latest is not None and self._granted(latest)
        if granted:
            self._add(number, CONSENT)
        else:
            self._discard(number, CONSENT)

    def _granted(self, record: ConsentRecord) -> bool:
        return record.levels.get(self.rules.consent, 0) >= self.min_grant

    def _traits(self, mac: str, number: int) -> None:
        traits = self.accounts.traits(mac)
        for trait, dim in self.trait_dims.items():
            keep = traits.get(trait)
            shard = self.shard(self.space.shard_of(number))
            for name in list(shard.names(from_trait(dim, ""))):
                if name != from_trait(dim, keep or ""):
                    self._discard(number, name)
            if keep:
                self._add(number, from_trait(dim, keep))

    # ------------------------------------------------------------------ windows
    def _roll_windows(self) -> None:
        """Once a day per shard: the windows made again from the day bitmaps, and the days
        older than the longest window dropped."""
        today = self.today()
        longest = max(self.rules.windows)
        for shard in range(self.space.shards):
            if self._windows_day.get(shard) == today:
                continue
            maps = self.shard(shard)
            days = {}
            for name in list(maps.names(DAY)):
                age = (today - date.fromisoformat(name[len(DAY) :])).days
                if age >= longest or age < 0:
                    del maps.maps[name]
                    self._dropped.setdefault(shard, set()).add(name)
                else:
                    days[name] = age
            for w in self.rules.windows:
                fresh = BitMap.union(BitMap(), *(maps.maps[n] for n, a in days.items() if a < w))
                if fresh != maps.get(active(w)):
                    maps.maps[active(w)] = fresh
                    self._changed.setdefault(shard, set()).add(active(w))
            self._windows_day[shard] = today


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _person(sid: str, account: str | None) -> str:
    return "a:" + account if account else "s:" + sid
