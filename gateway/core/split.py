"""Splitting events by purpose, and counting what was stored and what was left out.

Each event leaves as one part per granted purpose it has fields for, and every field of a
purpose that is not granted stays behind. A request's context (IP, browser, device, place) is
the same for all its events: it is grouped by purpose and stored once per stream entry
(``contexts``), beside the parts of that purpose, rather than copied into each of them.

The collection path must take tens of thousands of events a second on two cores, so per
event this does as little Python as it can: in the usual case (every field an event carries
serves one purpose, the event type's main one) the part is the event struct encoded whole by
msgspec, whose structs leave out unset fields. Counting fields per name is done afterwards
for whole groups of events at once (``tally``), not field by field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

import msgspec

from .parts import Batch, Event, EventPart, PartsByEvent

_encode = msgspec.json.Encoder().encode

Counts = dict[tuple[str, str], int]  # (purpose, field name) -> how many
WHOLE_MIN = 8  # events in a request from which grouping the whole list at once pays


@dataclass(frozen=True, slots=True)
class Tally:
    """One request's counts, for its answer and for the metrics."""

    stored: int  # events with at least one part stored
    duplicates: int
    stored_parts: dict[str, int]  # per purpose
    stored_fields: Counts
    dropped_fields: Counts  # not consented (or no longer, by the time of the write)


class _Step(NamedTuple):
    """One part of a fast-path event: the event itself (``own``) or its envelope alone."""

    purpose: str
    own: bool
    needs_field: tuple[str, ...]  # own part, no context: one of these must be set


class _Purpose(NamedTuple):
    """What an event type holds for one purpose: its own fields and the context's."""

    purpose: str
    granted: bool
    own: tuple[str, ...]  # the event's own fields serving it
    own_only: tuple[str, ...]  # of those, the ones the context does not also hold
    ctx_names: tuple[str, ...]  # the context's fields serving it


@dataclass(slots=True)
class _TypePlan:
    purposes: list[_Purpose]  # every purpose the type has fields for, in purpose order
    fast: list[_Step] | None  # None: every event of the type takes the general path
    others: tuple[str, ...]  # fields outside the main purpose: the fast path needs them unset
    getters: dict[str, attrgetter[Any]] = field(default_factory=dict)


class Splitter:
    """Splits one request's events by purpose, for granted purposes only."""

    def __init__(
        self,
        purposes: Mapping[str, Mapping[str, str]],
        context: Mapping[str, Any],
        granted: frozenset[str],
        struct_fields: Mapping[str, tuple[str, ...]],
        context_purposes: Mapping[str, str],
        plans: dict[str, _TypePlan] | None = None,
    ) -> None:
        self.purposes = purposes
        self.context_purposes = context_purposes
        self.struct_fields = struct_fields
        self.context = context
        self.granted = granted
        # Plans depend on the context's field names and the grants only, not on their values:
        # ``plans`` is shared by every splitter of the same names and grants (``Plans``).
        self._types: dict[str, _TypePlan] = {} if plans is None else plans
        by_purpose: dict[str, dict[str, Any]] = {}
        for name, value in context.items():
            by_purpose.setdefault(context_purposes[name], {})[name] = value
        # Per granted purpose: its share of the context, a JSON object stored once per entry.
        self.contexts: dict[str, bytes] = {
            p: _encode(fields) for p, fields in sorted(by_purpose.items()) if p in granted
        }

    def _plan(self, type_: str) -> _TypePlan:
        mapping = self.purposes[type_]
        own = self.struct_fields[type_]
        ctx_by: dict[str, list[str]] = {}
        for name in self.context:
            ctx_by.setdefault(self.context_purposes[name], []).append(name)
        own_by: dict[str, list[str]] = {}
        for name in own:
            own_by.setdefault(mapping[name], []).append(name)
        plan: list[_Purpose] = []
        for purpose in sorted({*ctx_by, *own_by}):  # the store's bit order
            ctx = tuple(ctx_by.get(purpose, ()))
            names = tuple(own_by.get(purpose, ()))
            plan.append(
                _Purpose(
                    purpose,
                    purpose in self.granted,
                    names,
                    tuple(n for n in names if n not in ctx),
                    ctx,
                )
            )
        # The fast path: the fields of the type's main purpose are the event's encoding.
        main = max(own_by, key=lambda p: len(own_by[p]), default=None)
        fast: list[_Step] | None = None
        others: tuple[str, ...] = ()
        if main is not None and main in self.granted:
            others = tuple(n for n in own if mapping[n] != main)
            fast = []
            for p in plan:
                if p.granted and p.purpose == main:
                    fast.append(_Step(p.purpose, True, () if p.ctx_names else p.own))
                elif p.granted and p.ctx_names:
                    fast.append(_Step(p.purpose, False, ()))
        found = self._types[type_] = _TypePlan(plan, fast, others)
        return found

    def split_all(self, events: Sequence[Event]) -> Split:
        """The request's events split by purpose, ready for ``Store.store_events``."""
        return Split(self, events, self._whole_batch(events))

    def _whole_batch(self, events: Sequence[Event]) -> tuple[list[str], Batch] | None:
        """The whole request grouped by purpose in a few calls over all its events, when
        every event takes the fast path to the same parts (the usual APP batch: events whose
        fields serve one purpose, and the context); else None, and events go one by one.

        The main purpose's array is then the msgspec encoding of the list of event structs,
        and every context-only purpose's array is the list of the events' envelopes."""
        if len(events) < WHOLE_MIN:  # a beacon's one event: cheaper one at a time
            return None
        groups: dict[str, list[Any]] = {}
        for e in events:
            group = groups.get(e.type)
            if group is None:
                groups[e.type] = [e.struct]
            else:
                group.append(e.struct)
        shape: tuple[str, tuple[str, ...]] | None = None
        for type_, structs in groups.items():
            tp = self._types.get(type_) or self._plan(type_)
            if tp.fast is None:
                return None
            own = [step for step in tp.fast if step.own]
            if len(own) != 1:
                return None
            this = (own[0].purpose, tuple(step.purpose for step in tp.fast if not step.own))
            if shape is None:
                shape = this
            elif this != shape:
                return None
            for names, needed in ((tp.others, False), (own[0].needs_field, True)):
                if not names:
                    continue
                values = list(map(_getter(tp, *names), structs))
                unset = None if len(names) == 1 else (None,) * len(names)
                if needed and unset in values:  # an event with nothing for its main purpose
                    return None
                if not needed and values.count(unset) != len(values):  # a field elsewhere
                    return None
        assert shape is not None
        main, context_only = shape
        structs = [e.struct for e in events]
        purposes = sorted((main, *context_only))
        arrays = {main: _encode(structs)}
        if context_only:
            envelopes = map(_Envelope, map(_type_of, events), _ids(events), map(_ts, structs))
            shared = _encode(list(envelopes))
            for purpose in context_only:
                arrays[purpose] = shared
        mask = sum(1 << i for i in range(len(purposes)))
        n = len(events)
        batch = Batch([arrays[p] for p in purposes], [n] * len(purposes), bytes([48 + mask]) * n)
        return purposes, batch

    def split(self, event: Event) -> list[EventPart]:
        tp = self._types.get(event.type) or self._plan(event.type)
        s = event.struct
        fast = tp.fast
        if fast is not None:
            for name in tp.others:
                if getattr(s, name) is not None:
                    fast = None
                    break
        if fast is None:
            return self._split_slowly(event, tp)
        out: list[EventPart] = []
        whole = head = None
        for purpose, own, needs_field in fast:
            if whole is None:
                whole = _encode(s)
            if own:
                if needs_field:
                    for name in needs_field:
                        if getattr(s, name) is not None:
                            break
                    else:
                        continue  # nothing of its own for this purpose, and no context
                out.append((purpose, whole))
            else:
                if head is None:  # the envelope: type, event_id and ts lead the encoding
                    head = whole[: whole.index(b'"', whole.index(b'"ts":"') + 6) + 1] + b"}"
                out.append((purpose, head))
        return out

    def _split_slowly(self, event: Event, tp: _TypePlan) -> list[EventPart]:
        """Any event: its fields are read one by one and grouped by purpose."""
        s = event.struct
        head: dict[str, Any] = {"event_id": event.event_id, "type": event.type, "ts": s.ts}
        out: list[EventPart] = []
        for p in tp.purposes:
            if not p.granted:
                continue
            fields = None
            for name in p.own:
                value = getattr(s, name)
                if value is not None:
                    if fields is None:
                        fields = dict(head)
                    fields[name] = value
            if fields is not None:
                out.append((p.purpose, _encode(fields)))
            elif p.ctx_names:
                out.append((p.purpose, _encode(head)))
        return out

    def tally(self, events: Sequence[Event], outcomes: Sequence[tuple[str, ...] | None]) -> Tally:
        """What was stored and left out, given the store's outcome for each event (None for a
        duplicate, else the purposes whose parts it stored). Events are counted in groups
        of one type and one outcome, a field at a time over the whole group."""
        groups: dict[tuple[str, tuple[str, ...] | None], list[Any]] = {}
        for e, kept in zip(events, outcomes, strict=True):
            group = groups.get((e.type, kept))
            if group is None:
                groups[(e.type, kept)] = [e.struct]
            else:
                group.append(e.struct)
        stored = duplicates = 0
        parts: dict[str, int] = {}
        kept_fields: Counts = {}
        dropped: Counts = {}
        for (type_, kept), structs in groups.items():
            n = len(structs)
            tp = self._types.get(type_) or self._plan(type_)
            if kept is None:
                duplicates += n
            else:
                stored += bool(kept) * n
            for p in tp.purposes:
                if p.granted and kept is None:
                    continue  # a duplicate: neither stored now nor refused
                if p.granted and p.purpose in kept:  # type: ignore[operator]
                    target = kept_fields
                    parts[p.purpose] = parts.get(p.purpose, 0) + n
                else:  # refused, or no longer consented when it was written
                    target = dropped
                for name in p.own_only:
                    present = n - list(map(_getter(tp, name), structs)).count(None)
                    if present:
                        target[(p.purpose, name)] = target.get((p.purpose, name), 0) + present
                for name in p.ctx_names:
                    target[(p.purpose, name)] = target.get((p.purpose, name), 0) + n
        return Tally(stored, duplicates, parts, kept_fields, dropped)


class Plans:
    """Splitting plans kept across requests, per context field names and grants: a beacon's
    plan is otherwise worked out again for every request (10 us). Bounded: when more than
    ``size`` kinds of requests were seen, it starts over."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._by_kind: dict[tuple[tuple[str, ...], frozenset[str]], dict[str, _TypePlan]] = {}

    def of(self, context: Mapping[str, Any], granted: frozenset[str]) -> dict[str, _TypePlan]:
        kind = (tuple(context), granted)
        found = self._by_kind.get(kind)
        if found is None:
            if len(self._by_kind) >= self.size:
                self._by_kind = {}
            found = self._by_kind[kind] = {}
        return found


def _getter(tp: _TypePlan, *names: str) -> attrgetter[Any]:
    key = ",".join(names)
    found = tp.getters.get(key)
    if found is None:
        found = tp.getters[key] = attrgetter(*names)
    return found


class _Envelope(msgspec.Struct):
    """An event's envelope, in the order the fast path slices it from the event's encoding."""

    type: str
    event_id: str
    ts: datetime


_type_of = attrgetter("type")
_ts = attrgetter("ts")


_event_id = attrgetter("event_id")


def _ids(events: Sequence[Event]) -> Iterator[str]:
    return map(_event_id, events)


class Split:
    """A request's events split by purpose (``store.Grouped``): grouped whole when the fast
    path allows, else from each event's parts (and always so for a subset, on a resend)."""

    def __init__(
        self,
        splitter: Splitter,
        events: Sequence[Event],
        whole: tuple[list[str], Batch] | None,
    ) -> None:
        self.ids = [e.event_id for e in events]
        self._events = events
        self._splitter = splitter
        self._whole = whole
        self._by_event: PartsByEvent | None = None
        self.purposes = whole[0] if whole is not None else self._parts().purposes

    def _parts(self) -> PartsByEvent:
        if self._by_event is None:
            split = self._splitter.split
            self._by_event = PartsByEvent([(e.event_id, split(e)) for e in self._events])
        return self._by_event

    @property
    def empty(self) -> bool:
        """No event has a part for any granted purpose: nothing to store."""
        return not self.purposes

    def batch(self, pending: Sequence[int]) -> Batch:
        if self._whole is not None and len(pending) == len(self.ids):
            return self._whole[1]
        # Event by event: the same purposes as the whole (test_split checks the two agree).
        return self._parts().batch(pending)
