"""``GET /v1/subject``: everything stored about the caller (policy clause 6).

Consent state, the whole ledger with receipts, and the stored event parts grouped by purpose,
values in their catalogue types.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .consent import evaluate
from .identity import caller
from .ledger import check_chain
from .services import services

bp = Blueprint("access", __name__)


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
    events, truncated = svc.store.subject_events(who.sid, svc.config["ACCESS_LIMIT"])
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
