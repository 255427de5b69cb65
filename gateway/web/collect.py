"""``POST /v1/events``: a page's events (collection itself is ``core/collection.py``)."""

from __future__ import annotations

import base64

from flask import Blueprint, Response, jsonify, request

from ..core.caller import Caller
from ..core.collection import Refresh, Sender, collect, refreshed_hint
from ..core.tokens import CONSENT_COOKIE
from .consent import refusal_of
from .identity import caller
from .payload import read_body
from .services import Services, services

bp = Blueprint("collect", __name__)

GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
assert len(GIF) == 43
NO_STORE = "no-store, no-cache, must-revalidate, max-age=0"


def refresh_cookie(svc: Services, who: Caller, refresh: Refresh | None) -> str | None:
    """The Set-Cookie value of a fresh ``_consent``, when the browser's was stale."""
    hint = refreshed_hint(svc, who, refresh, "cookie")
    return None if hint is None else svc.cookies.consent_header(hint)


@bp.post("/v1/events")
def post_events() -> Response:
    svc = services()
    svc.origins.check_write(request)
    raw = read_body(request, max_bytes=svc.config["MAX_EVENT_BODY_BYTES"])
    events = svc.codec.decode_body(raw)
    who = caller()
    sender = Sender(
        who,
        request.remote_addr,
        request.user_agent.string,
        request.cookies.get(CONSENT_COOKIE),
        refusal_of(svc, request),
    )
    done = collect(svc, sender, events)
    resp = jsonify(done.answer)
    resp.status_code = 202
    fresh = refresh_cookie(svc, who, done.refresh)
    if fresh is not None:
        resp.headers.add("Set-Cookie", fresh)
    return resp
