"""Events' parts as the store takes them: grouped by purpose, one JSON array each.

An event is split into parts, one per purpose it has fields for (``split.py``); the store
appends each purpose's parts of a request as one array to that purpose's stream, in one
atomic step for the whole request. These are the shapes that travel between the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import msgspec


class Event(msgspec.Struct, gc=False):
    """A decoded event. A msgspec struct: made once per event, in C (no cycles: untracked)."""

    event_id: str
    type: str
    # The decoded msgspec struct, its ``ts`` set (the gateway's clock when the event had
    # none): parts are encoded from it (split.py).
    struct: Any
    minted: bool = False  # the gateway made the event id (a pixel sent without one)


# One event's fields that serve one purpose, ready for its purpose's stream: the purpose, and
# a JSON object holding event_id, type, ts and those fields. A plain tuple: 1,000 are made
# for a 500-event batch, and a named tuple costs several times as much to make.
EventPart = tuple[str, bytes]


class Batch(NamedTuple):
    """Events' parts grouped by purpose, as the event script takes them."""

    arrays: list[bytes]  # per purpose: a JSON array of its parts, in event order
    counts: list[int]  # per purpose: how many parts
    masks: bytes  # per event: "0" + the bit mask of the purposes it has parts for


@runtime_checkable
class Grouped(Protocol):
    """What the store stores: event ids, the purposes they have parts for (sorted), and the
    parts grouped by purpose for any subset of the events (a resend leaves some out).
    ``split.Split`` builds the whole batch at once in the usual case."""

    @property
    def ids(self) -> Sequence[str]: ...

    @property
    def purposes(self) -> Sequence[str]: ...

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
