"""``POST /v1/batch``: an APP's telemetry, up to 500 events for one subject, gzip allowed.

Unlike a web request, a batch is accepted event by event: a malformed event is reported in
its place and the others are stored, since an APP that spooled events for days must not
lose them all to one bad one. The body's shape, its size and its device context must be
right, and storage is one atomic step: when it fails the whole batch is 503 and nothing of
it is stored, so the APP can send the same batch again (event ids make that safe).
"""

from __future__ import annotations

from typing import Any

import msgspec
from flask import Blueprint, Response, request

from ..core.collection import Sender, collect, refreshed_hint
from ..core.errors import NoValidEvent, SubjectRequired
from ..core.events import Rejected
from ..core.parts import Event
from .consent import CONSENT_HEADER, refusal_of
from .identity import caller
from .payload import read_encoded_body
from .services import services

bp = Blueprint("batch", __name__)
_encode = msgspec.json.Encoder().encode


@bp.post("/v1/batch")
def post_batch() -> Response:
    svc = services()
    svc.origins.check_write(request)
    who = caller()
    if who.via != "header" or who.sid is None:
        raise SubjectRequired("a batch needs the X-Subject header: POST /v1/subjects first")
    raw = read_encoded_body(request, max_bytes=svc.config["MAX_BATCH_BYTES"])
    device, decoded = svc.codec.decode_batch(raw, svc.config["MAX_EVENTS_PER_BATCH"])
    valid = [d for d in decoded if isinstance(d, Event)]
    if not valid:
        errors = {
            f"$.events[{i}]": _error(d) for i, d in enumerate(decoded) if isinstance(d, Rejected)
        }
        raise NoValidEvent("no event of the batch is valid; nothing was stored", fields=errors)
    hint = request.headers.get(CONSENT_HEADER)
    sender = Sender(who, request.remote_addr, None, hint, refusal_of(svc, request))
    done = collect(svc, sender, valid, device)
    outcomes = iter(done.outcomes)
    results = [
        _rejected(d) if isinstance(d, Rejected) else _outcome(d.event_id, next(outcomes))
        for d in decoded
    ]
    answer = done.answer | {"rejected": len(decoded) - len(valid), "results": results}
    # msgspec: a 500-event answer encodes several times faster than with jsonify
    resp = Response(_encode(answer), 202, mimetype="application/json")
    fresh = refreshed_hint(svc, who, done.refresh, "header")
    if fresh is not None:
        resp.headers[CONSENT_HEADER] = fresh
    return resp


def _outcome(event_id: str, kept: tuple[str, ...] | None) -> dict[str, Any]:
    if kept is None:
        return {"event_id": event_id, "status": "duplicate"}
    if kept:
        return {"event_id": event_id, "status": "stored", "purposes": kept}
    return {"event_id": event_id, "status": "not_consented"}


def _rejected(d: Rejected) -> dict[str, Any]:
    return {"event_id": d.event_id, "status": "rejected", "error": _error(d)}


def _error(d: Rejected) -> dict[str, Any]:
    error: dict[str, Any] = d.error.body()["error"]
    return error
