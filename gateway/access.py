"""``GET /v1/subject``: everything stored about the caller (policy clause 6).

Consent state, the whole ledger with receipts, and the stored event parts grouped by purpose,
values back in their catalogue types.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from .consent import evaluate
from .events import decode_value
from .identity import caller
from .ledger import check_chain
from .services import services

bp = Blueprint("access", __name__)

_HEAD = frozenset({"sid", "event_id", "type", "ts", "stream_id"})


@bp.get("/v1/subject")
def subject() -> Response:
    svc = services()
    who = caller()
    cat = svc.catalogue
    if who.sid is None:
        return jsonify(
            {
                "subject": None,
                "consent": evaluate(cat, {}).to_json(cat),
                "ledger": [],
                "events": {},
                "truncated": False,
            }
        )
    entries = svc.store.ledger(who.sid)
    grouped, truncated = svc.store.subject_events(who.sid, svc.config["ACCESS_LIMIT"])
    events: dict[str, list[dict[str, Any]]] = {}
    for purpose, rows in grouped.items():
        events[purpose] = [
            {
                k: (v if k in _HEAD or k not in cat.fields else decode_value(cat.fields[k], v))
                for k, v in row.items()
            }
            for row in rows
        ]
    chain = check_chain([e for _, e in entries])
    return jsonify(
        {
            "subject": who.sid,
            "consent": evaluate(cat, svc.store.read_consent(who.sid)).to_json(cat),
            "ledger": [svc.receipts.issue(e, entry_id) for entry_id, e in entries],
            "ledger_intact": chain.intact,
            "events": events,
            "truncated": truncated,
        }
    )
