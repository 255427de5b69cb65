"""The audience index: Roaring bitmaps (``pyroaring``) of people, one per value of each
dimension, one per activity window and one of the people whose consent stands now.

People have dense numbers within their shard (a slot group of the store: ``PersonSpace``), so
that a bitmap of a few hundred thousand people is a few containers of bits rather than a
scatter of sparse arrays: 10 M people in about 150 bitmap containers per dense bitmap. Each
shard's bitmaps are kept apart by the indexer (a shard is saved with its group's keys) and
merged into one set of bitmaps by a reader, whose numbers are then global: a query is a few
bitmap operations whatever the number of shards.

Bitmap names: ``consent``; ``active:<days>``; ``seen`` (people the index set up: consent and
traits read once); ``day:<YYYY-MM-DD>`` (people active that day, the indexer's own, from
which the windows are made); ``e:<dimension>=<value>`` (values from events) and
``t:<dimension>=<value>`` (from account traits), kept apart so that a trait's change never
erases what events said.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from pyroaring import BitMap

CONSENT = "consent"
SEEN = "seen"
DAY = "day:"


def active(days: int) -> str:
    return f"active:{days}"


def from_events(dimension: str, value: str) -> str:
    return f"e:{dimension}={value}"


# the names of the bitmaps a person is in because of its events (not its consent or traits)
DERIVED_FROM_EVENTS = (DAY, "active:", "e:")


def from_trait(dimension: str, value: str) -> str:
    return f"t:{dimension}={value}"


def queried(name: str) -> bool:
    """Whether readers need the bitmap (the day bitmaps and ``seen`` are the indexer's)."""
    return not name.startswith(DAY) and name != SEEN


@dataclass(frozen=True)
class PersonSpace:
    """Global person numbers: a shard's ``local`` number in its own range of the 32 bits."""

    shards: int

    @property
    def bits(self) -> int:
        return 32 - max(self.shards - 1, 0).bit_length()

    def number(self, shard: int, local: int) -> int:
        if not 0 <= local < 1 << self.bits:
            raise OverflowError(f"shard {shard} has no room for person {local}")
        return shard << self.bits | local

    def shard_of(self, person: int) -> int:
        return person >> self.bits

    def bounds(self, shard: int) -> tuple[int, int]:
        """The numbers ``[lo, hi)`` of the shard's people."""
        return shard << self.bits, (shard + 1) << self.bits


class Bitmaps:
    """Named bitmaps of one set of people (a shard's, or every shard's merged)."""

    def __init__(self, bitmaps: Mapping[str, BitMap] | None = None) -> None:
        self.maps: dict[str, BitMap] = dict(bitmaps or {})

    def get(self, name: str) -> BitMap:
        """The bitmap (made empty on first use)."""
        bm = self.maps.get(name)
        if bm is None:
            bm = self.maps[name] = BitMap()
        return bm

    def peek(self, name: str) -> BitMap | None:
        return self.maps.get(name)

    def names(self, prefix: str = "") -> Iterator[str]:
        return (n for n in list(self.maps) if n.startswith(prefix))

    def containing(self, person: int) -> list[str]:
        return [name for name, bm in list(self.maps.items()) if person in bm]

    def memory_bytes(self) -> int:
        """What the bitmaps' containers take (CRoaring's own count of its bytes)."""
        return sum(bm.__sizeof__() for bm in list(self.maps.values()))


def union(bitmaps: Iterable[BitMap | None]) -> BitMap:
    present = [bm for bm in bitmaps if bm is not None]
    if not present:
        return BitMap()
    if len(present) == 1:
        return present[0]
    return BitMap.union(*present)
