"""Collection: what ``POST /v1/events``, ``POST /v1/batch`` and the pixel share.

For each request: who is calling, what their ledger grants right now, enrich for those
purposes only, split every event by purpose, and hand the parts to one atomic store call that
checks the grants again. What is not consented is dropped here and counted by field name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .caller import Caller
from .catalogue import NECESSARY
from .consent import HINT_CHARS, consent_hint, granted_now, honour_refusal
from .errors import StaleConsent
from .parts import Event
from .ports import ANY_HEAD
from .service import Gateway


@dataclass(frozen=True, slots=True)
class Sender:
    """What collection needs to know about the request that carried the events."""

    who: Caller
    remote_addr: str | None
    user_agent: str | None  # None: not parsed (the APP states its device in its context)
    consent_cookie: str | None  # the signed _consent value (or the APP's X-Consent), if any
    refusal: str | None = None  # a standing refusal of advertising: "gpc" or "optout"


Refresh = tuple[frozenset[str], str]  # a fresh _consent cookie to send back: granted, head


@dataclass(frozen=True, slots=True)
class Collected:
    answer: dict[str, Any]  # the body of the answer
    refresh: Refresh | None
    # per event: None for a duplicate, else the purposes whose parts were stored
    outcomes: list[tuple[str, ...] | None]


def collect(
    gw: Gateway,
    sender: Sender,
    events: Sequence[Event],
    device: Mapping[str, Any] | None = None,
) -> Collected:
    """Store what is consented of ``events`` for the sender's subject.

    ``device`` is an APP's own context (device model, OS...), gated by purpose like
    everything the gateway derives from the request.

    One round trip to Redis when the browser's ``_consent`` cookie says what it granted:
    enrichment and splitting follow the cookie, and the store's script refuses the whole
    write unless the ledger's head is still the one the cookie was issued at (then the
    request is redone from the ledger, and a fresh cookie goes back). Without a usable
    cookie the ledger is read first. Either way the script checks each purpose's grant.
    """
    who = sender.who
    sid = who.sid or ""
    granted: frozenset[str] = frozenset()
    expect = ANY_HEAD
    refresh: Refresh | None = None
    if who.sid is not None:
        # With GPC the ledger itself is read: the advertising grant must be seen to withdraw it.
        hint = None if sender.refusal else _hint(gw, who, sender.consent_cookie)
        if hint is not None:
            granted, expect = hint
        else:
            current = gw.store.read_consent(sid)
            granted = granted_now(gw.catalogue, current, gw.min_grant)
            if who.via == "header" and granted:  # give the APP a hint for its next batch
                refresh = (granted | {NECESSARY}, current.head)
        # once: afterwards it is not granted. Also a grant under an older version, which no
        # longer counts but whose data is held: the withdrawal deletes it.
        advertising = gw.catalogue.advertising
        held = current.levels.get(advertising or "", 0) > 0 if hint is None else False
        if sender.refusal and (advertising in granted or held):
            honour_refusal(gw, who, gw.store.read_consent(sid), sender.refusal)
            current = gw.store.read_consent(sid)
            granted = granted_now(gw.catalogue, current, gw.min_grant)
            expect = ANY_HEAD
            refresh = (granted | {NECESSARY}, current.head)
    now_ms = int(time.time() * 1000)
    for _ in range(2):
        context = (
            gw.enricher.context(sender.remote_addr, sender.user_agent, granted) if granted else {}
        )
        if device:
            context = {**device, **context}
        splitter = gw.codec.splitter(context, granted)
        batch = splitter.split_all(events)
        if batch.empty:
            if expect != ANY_HEAD:  # nothing to store by the hint: make sure it is current
                current = gw.store.read_consent(sid)
                if not current.head.startswith(expect):
                    granted = granted_now(gw.catalogue, current, gw.min_grant)
                    expect = ANY_HEAD
                    refresh = (granted | {NECESSARY}, current.head)
                    continue
            outcomes: list[tuple[str, ...] | None] = [()] * len(events)
            break
        try:
            outcomes = gw.store.store_events(
                sid,
                batch,
                gw.min_grant,
                now_ms,
                expect,
                minted_ids=all(e.minted for e in events),
                contexts=splitter.contexts,
            )
            break
        except StaleConsent as stale:
            granted = granted_now(gw.catalogue, stale.state, gw.min_grant)
            expect = ANY_HEAD
            refresh = (granted | {NECESSARY}, stale.state.head)
    else:  # pragma: no cover - the second attempt never asks for a head
        raise AssertionError("unreachable")

    tally = splitter.tally(events, outcomes)
    gw.metrics.count_collected(
        tally.stored_parts, tally.duplicates, tally.stored_fields, tally.dropped_fields
    )
    answer = {
        "accepted": len(events),
        "stored": tally.stored,
        "duplicates": tally.duplicates,
        "stored_fields": _by_name(tally.stored_fields),
        "dropped_fields": _by_name(tally.dropped_fields),
    }
    reason = shortfall(who.sid is not None, len(events), tally.stored, tally.duplicates, answer)
    if reason is not None:
        answer["reason"] = reason
    return Collected(answer, refresh, outcomes)


def shortfall(
    subject: bool, sent: int, stored: int, duplicates: int, answer: Mapping[str, Any]
) -> str | None:
    """Why less was stored than was sent, when it was (None when all of it was kept or had
    been before): ``no_subject`` (no consent recorded from this browser or APP, or a forged
    token: nothing can be stored), ``not_consented`` (no purpose the events serve is
    granted), ``partly_consented`` (events or fields of purposes not granted were dropped;
    ``dropped_fields`` says which)."""
    if not subject:
        return "no_subject"
    if stored == 0 and duplicates < sent:
        return "not_consented"
    if answer["dropped_fields"] or stored + duplicates < sent:
        return "partly_consented"
    return None


def _hint(gw: Gateway, who: Caller, cookie: str | None) -> tuple[frozenset[str], str] | None:
    """What the signed ``_consent`` cookie (or the APP's ``X-Consent``) says was granted, and
    at which ledger head. Only a hint: the store refuses to act on it once the head moved."""
    if who.via is None:
        return None
    claim = gw.tokens.read_consent(cookie)
    if claim is None or claim.get("v") != gw.catalogue.current.version:
        return None
    head, purposes = claim.get("h"), claim.get("p")
    if not isinstance(head, str) or len(head) < HINT_CHARS or not isinstance(purposes, list):
        return None
    granted = gw.optional_purposes.intersection(purposes)
    # Nothing granted: read the ledger rather than trust an empty claim to skip the store.
    return (granted, head) if granted else None


def refreshed_hint(gw: Gateway, who: Caller, refresh: Refresh | None, via: str) -> str | None:
    """A fresh consent hint for a caller identified ``via`` ("cookie": the ``_consent``
    cookie's value; "header": the APP's ``X-Consent``), when its own was stale."""
    if refresh is None or who.via != via:
        return None
    return consent_hint(gw, refresh[0], refresh[1])


def _by_name(counts: dict[tuple[str, str], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, name), n in counts.items():
        out[name] = out.get(name, 0) + n
    return out
