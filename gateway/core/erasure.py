"""Erasure (policy clause 4: information is deleted on request; PIPL art. 47), and its
receipt.

Everything held about the subject goes at once (``Storage.erase_subject``): its event parts
in every purpose stream, its consent state and ledger, the event ids remembered to recognise
a resent event, its index, saved logins and SMS codes, its link to an account (and the
account's traits when it was the last subject linked), and its person in the audience index
(marked out of every count at once, forgotten when the indexer folds the news). What stays,
and why: its places on the senders' suppression lists, so that it is never contacted again
(a list holds the subject id and a time, nothing else).

The ledger was the proof of the person's choices; erased, it can prove nothing more. So the
answer carries a receipt of its own: what was removed and what was kept, signed with the
receipt keys (``receipts.py``: EdDSA, the keys of ``/.well-known/jwks.json``), which the person
can keep and anyone can check offline.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from .service import Gateway

KEPT_BECAUSE = "so that the subject is never contacted again on these channels"
RECEIPT_TYPE = "erasure-receipt+jws"  # the JWS header's typ: not a consent receipt


def erase(gw: Gateway, sid: str, source: str) -> dict[str, Any]:
    """Erase ``sid``; what was removed (as the answer always said) and the signed receipt.
    ``source``: ``subject`` (the person's own request) or ``request`` (staff, on a written
    request)."""
    erased = gw.store.erase_subject(sid)
    gw.metrics.consents.labels(action="erase").inc()
    stays = gw.store.suppressions_of(sid, tuple(gw.catalogue.channels))
    lists = sorted(ch for ch, at in stays.items() if at is not None)
    receipt = gw.receipts.attest(
        {
            "id": secrets.token_hex(16),
            "action": "erasure",
            "subject": sid,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "source": source,
            "removed": {
                "event_entries": erased.event_entries,
                "consent_state": erased.consent_state,
                "ledger_entries": erased.ledger_entries,
                "remembered_event_ids": erased.event_ids,
                "saved_logins": erased.saved_logins,
                "sms_codes_and_phone_hashes": erased.sms_codes,
                "account_link": erased.account_link,
                "account_traits": erased.account_traits,
                "audience_index": erased.audience_person,
            },
            "kept": {"suppression_lists": lists, "why": KEPT_BECAUSE} if lists else {},
        },
        typ=RECEIPT_TYPE,
    )
    removed = {"event_entries": erased.event_entries, "saved_logins": erased.saved_logins}
    return {"removed": removed, "receipt": receipt}
