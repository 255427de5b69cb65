"""The API of the platform's senders (email and SMS campaigns), behind a server API key.

* ``GET /v1/senders/contact?subject=&channel=``: may this subject be sent advertising on this
  channel right now (advertising granted on the ledger and the channel not left)?
* ``GET /v1/senders/suppressions?channel=&since=``: the subjects who left the channel or all
  advertising since a time, as NDJSON, oldest first, read page by page from Redis.
* ``POST /v1/senders/links``: a recipient's links: for email the open beacon of a campaign,
  the unsubscribe page and the ``List-Unsubscribe`` header values; for SMS a short code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context

from ..core.caller import subject_param
from ..core.consent import evaluate
from ..core.errors import GatewayError, ValidationFailed
from ..core.links import CAMPAIGN_RE
from .auth import authorised
from .mailing import EMAIL, unsubscribe_headers
from .paging import since_of
from .payload import read_object
from .services import Services

bp = Blueprint("senders", __name__)

SCOPE = "senders"
PAGE = 1_000


def _channel(svc: Services, value: Any) -> str:
    channels = svc.catalogue.channels
    if value not in channels:
        raise ValidationFailed("unknown channel", fields={"channel": f"one of {list(channels)}"})
    return str(value)


def _base_url(svc: Services) -> str:
    return svc.config.get("PUBLIC_URL") or request.host_url


@bp.get("/v1/senders/contact")
def contact() -> Response:
    svc = authorised(SCOPE)
    sid = subject_param(request.args.get("subject"))
    channel = _channel(svc, request.args.get("channel"))
    state = evaluate(svc.catalogue, svc.store.read_consent(sid))
    info = (state.channels or {})[channel]
    return jsonify(
        {
            "subject": sid,
            "channel": channel,
            "may_contact": info["may_contact"],
            "advertising": svc.catalogue.advertising in state.granted,
            "unsubscribed_at": info["at"],
        }
    )


@bp.get("/v1/senders/suppressions")
def suppressions() -> Response:
    svc = authorised(SCOPE)
    channel = _channel(svc, request.args.get("channel"))
    since = since_of(request.args.get("since", "0"))
    # ``end=1``: the list ends with a line saying so (readers written before it had none).
    marked = request.args.get("end", "").lower() in ("1", "true")
    first = svc.store.suppressed_since(channel, since, PAGE)  # a store down: 503, not a 200

    def lines() -> Iterator[str]:
        """The list, then (``end=1``) ``{"end": true, "count": n}``. A list cut short (the
        store failing after the answer began) ends with an ``error`` line when marked, else
        the answer is broken off (no last chunk), so a reader never takes it for whole."""
        cursor, found, count = since, first, 0
        seen: set[str] = set()  # ids at the cursor's time already sent
        try:
            while True:
                fresh = [row for row in found if row.subject not in seen]
                for row in fresh:
                    count += 1
                    yield json.dumps({"subject": row.subject, "at_ms": row.at_ms}) + "\n"
                if len(found) < PAGE + len(seen) or not fresh:
                    break
                # The next page starts at the last time read, skipping every id already sent
                # at that time (all of them, however many share the millisecond).
                cursor = fresh[-1].at_ms
                seen = {row.subject for row in found if row.at_ms == cursor}
                found = svc.store.suppressed_since(channel, cursor, PAGE + len(seen))
        except GatewayError as e:
            if not marked:
                raise
            yield json.dumps(e.body()) + "\n"
            return
        if marked:
            yield json.dumps({"end": True, "count": count}) + "\n"

    return Response(stream_with_context(lines()), mimetype="application/x-ndjson")


@bp.post("/v1/senders/links")
def links() -> Response:
    svc = authorised(SCOPE)
    body = read_object(request, max_bytes=4096, max_depth=3)
    sid = subject_param(body.get("subject"))
    channel = _channel(svc, body.get("channel"))
    base = _base_url(svc).rstrip("/")
    out: dict[str, Any] = {"subject": sid, "channel": channel}
    if channel == EMAIL:
        campaign = body.get("campaign")
        if campaign is not None:
            if not isinstance(campaign, str) or not CAMPAIGN_RE.fullmatch(campaign):
                raise ValidationFailed(
                    "invalid campaign", fields={"campaign": "1-64 of A-Z a-z 0-9 _ . : -"}
                )
            out["open_pixel"] = f"{base}/e/{svc.mail.open_token(sid, campaign)}.gif"
        headers = unsubscribe_headers(svc.mail, base, sid)
        out["unsubscribe"] = headers["List-Unsubscribe"][1:-1]
        out["headers"] = headers
    else:
        phone = body.get("phone")
        if phone is not None and not isinstance(phone, str):
            raise ValidationFailed("phone must be a string", fields={"phone": "string"})
        code = svc.sms.new_code(sid, phone)
        out["code"] = code
        out["unsubscribe"] = f"{base}/u/{code}"
        out["expires_in_s"] = svc.sms.ttl_s
    return jsonify(out)
