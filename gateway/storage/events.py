"""Event parts: one atomic script per request (``lua/events.lua``), per purpose one entry.

Each purpose has one stream per slot group (``ev:<purpose>``, keys.py); a request's parts of
a purpose are appended as one entry (``sid``, ``n``, ``events``: a JSON array of parts,
``context``: the request context's fields of that purpose, once), which is what lets one
server take tens of thousands of events a second. The script checks every purpose's grant on
the ledger in the same step, dedups by event id, and keeps the subject's index of its
entries; a subject's keys and streams share its group's slot, so this works unchanged on a
cluster.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any, cast

import msgspec

from ..core.catalogue import MAX_OPTIONAL_PURPOSES
from ..core.errors import OverLimit, StaleConsent
from ..core.parts import Grouped, PartsByEvent
from ..core.ports import ANY_HEAD, Events, Outcomes
from ..core.records import NO_LIMIT, Lifetimes, Limits
from .client import Client, translating
from .consent import consent_record
from .group import GroupCommit
from .keys import Keys

TRIM_DEDUP_SHARE = 1 / 16  # of event writes that also drop expired dedup ids
_MISSING: Any = object()
_decode = msgspec.json.Decoder().decode


def entry_events(fields: Mapping[str, str]) -> list[dict[str, Any]]:
    """The event parts one stream entry holds, each with the entry's context merged in (a
    part's own value of a field wins)."""
    events = _decode(fields.get("events", "[]"))
    if not isinstance(events, list):
        return []
    context = _decode(fields["context"]) if "context" in fields else None
    if not isinstance(context, dict) or not context:
        return events
    return [{**event, **{k: v for k, v in context.items() if k not in event}} for event in events]


class EventStorage:
    """The events half of ``RedisStorage`` (a mixin)."""

    r: Client
    _writer: Client
    keys: Keys
    lifetimes: Lifetimes
    limits: Limits | None
    dedup_window_ms: int
    _group: GroupCommit

    @translating
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

        ``events``: a ``Grouped`` (``split.Split``), or each event's id and parts in
        purpose-name order. ``min_grant[purpose]`` is the smallest level that counts as
        consent (1 + the index of the version the purpose last changed in). ``expect_head``
        is a prefix of the ledger head the caller's view of the consent came from; when the
        ledger moved since, nothing is stored and StaleConsent carries the current state.
        ``minted_ids``: the gateway made every event id itself (the pixel without one), so no
        event can be a retry and the dedup set is neither read nor written. ``contexts``: per
        purpose, the request context's fields serving it (a JSON object), stored once in its
        entry. Returns, per event, None for a duplicate or the purposes stored (empty when
        none was consented).
        """
        # (a list or tuple of pairs; not isinstance(Grouped): a runtime protocol check costs
        # more than the rest of this method)
        grouped = (
            PartsByEvent(events) if isinstance(events, list | tuple) else cast("Grouped", events)
        )
        ids = grouped.ids
        purposes = grouped.purposes
        if not purposes:
            return [() for _ in ids]
        if len(purposes) > MAX_OPTIONAL_PURPOSES:
            raise ValueError(f"at most {MAX_OPTIONAL_PURPOSES} purposes per write")
        out: Outcomes = [()] * len(ids)
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
        keys = self.keys.event_keys(sid, tuple(purposes))
        bucket = self.limits.events if self.limits else NO_LIMIT
        life = self.lifetimes
        head = [now_ms, self.dedup_window_ms, life.index_ms, expect_head, flags, sid]
        head += [bucket.burst, bucket.per_hour, life.holding_ms]
        head += [len(purposes), *purposes, *(min_grant[p] for p in purposes)]
        tail: list[str | bytes] = [(contexts or {}).get(p, b"") for p in purposes]
        # The attempt's name, kept by the script when it stores: what tells a resend after a
        # lost reply whether the first attempt stored (minted ids are never sent again).
        tail.append("" if minted_ids else os.urandom(8).hex())
        while True:
            batch = grouped.batch(pending)
            args = [*head, *batch.counts, *batch.arrays, batch.masks]
            args += ["\n".join([ids[i] for i in pending]), *tail]
            status, answer = self._group.run(keys, args, minted_ids)
            if status == "stale":
                it = iter(answer)
                raise StaleConsent(consent_record(dict(zip(it, it, strict=True))))
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

    # ------------------------------------------------------------------ readers
    @translating
    def subject_events(
        self, sid: str, rank: int, skip: int, limit: int
    ) -> tuple[list[tuple[str, dict[str, Any]]], tuple[int, int], bool]:
        """Up to ``limit`` of the subject's stored event parts, oldest first, from its index's
        entry ``rank`` (0-based) after ``skip`` of that entry's parts: (purpose, part) pairs,
        each part with ``stream_id``, the id of the entry holding it; where the next page
        starts (rank, skip); and whether there is more.

        Index entries are added in time order, so a page's position stays valid while the
        subject keeps sending events; entries trimmed by retention since yield nothing.
        Entries are read a few at a time and reading stops once the page is full: an entry
        holds up to a whole batch (500 parts), so reading ``limit`` entries at once could
        pull a thousand times what the page shows.
        """
        index = self.keys.index(sid)
        refs = cast("list[str]", self.r.zrange(index, rank, rank + max(limit, 1) - 1))
        total = int(self.r.zcard(index))
        out: list[tuple[str, dict[str, Any]]] = []
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

    @translating
    def trim_before(self, purpose: str, min_id_ms: int) -> int:
        """Remove a purpose's event parts older than ``min_id_ms`` from all its streams."""
        pipe = self.r.pipeline(transaction=False)
        for key in self.keys.streams(purpose):
            pipe.xtrim(key, minid=str(min_id_ms), approximate=False)
        return sum(pipe.execute())


READ_AHEAD = 4  # stream entries read per round trip when paging a subject's events
