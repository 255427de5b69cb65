"""``GET /v1/subject``: everything held about the caller (policy clause 6), a page at a time.

The consent state; a page of the ledger as receipts, checked; a page of the stored event
parts grouped by purpose, values in their catalogue types; and what else is kept about the
subject: its saved logins, SMS unsubscribe codes and the keyed hash of a number they were
sent to, its places on the senders' suppression lists, and how many event ids are remembered
to recognise a resent event. One cursor pages both the ledger and the events (``limit``
items of each per page); ``next_cursor`` is null when both are done.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..core.consent import evaluate
from ..core.records import EMPTY
from .identity import caller
from .paging import cursor_of, cursor_text, limit_of
from .proofs import ledger_page
from .services import Services, services

bp = Blueprint("access", __name__)


def held(svc: Services, sid: str) -> dict[str, Any]:
    """What the gateway keeps about ``sid`` besides its consent, ledger and events."""
    return {
        "saved_logins": svc.logins.held(sid),
        "account": svc.accounts.held(sid),
        "sms": svc.sms.held(sid),
        "suppressed": svc.store.suppressions_of(sid, svc.catalogue.channels),
        "remembered_event_ids": svc.store.dedup_count(sid),
    }


@bp.get("/v1/subject")
def subject() -> Response:
    svc = services()
    limit = limit_of(request.args)
    ledger_at, rank, skip = cursor_of(request.args, 3)
    who = caller()
    cat = svc.catalogue
    if who.sid is None:
        return jsonify(
            {
                "subject": None,
                "consent": evaluate(cat, EMPTY).to_json(cat),
                "ledger": [],
                "ledger_intact": True,
                "events": {},
                "held": {},
                "next_cursor": None,
            }
        )
    sid = who.sid
    ledger = ledger_page(svc, sid, ledger_at, limit)
    ledger_next = ledger_at + len(ledger["entries"]) if ledger["next_cursor"] else None
    parts, events_next, more_events = svc.store.subject_events(sid, rank, skip, limit)
    events: dict[str, list[dict[str, Any]]] = {}
    for purpose, part in parts:
        events.setdefault(purpose, []).append(part)
    following = None
    if ledger_next is not None or more_events:
        following = cursor_text(
            ledger_next if ledger_next is not None else ledger["length"], *events_next
        )
    return jsonify(
        {
            "subject": sid,
            "consent": evaluate(cat, svc.store.read_consent(sid)).to_json(cat),
            "ledger": ledger["entries"],
            "ledger_length": ledger["length"],
            "ledger_intact": ledger["chain"]["intact"],
            "ledger_problems": ledger["chain"]["problems"],
            "events": events,
            "held": held(svc, sid),
            "next_cursor": following,
        }
    )
