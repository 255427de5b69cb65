"""``POST /v1/optout``: refuse advertising with one request, no JavaScript needed.

Clause 2(3) lets people refuse commercial advertising. The opt-out is a signed ``_optout``
cookie bound to no subject, so it holds before any consent is recorded and on every request
after (``core/collection.py`` and ``core/consent.py`` treat it as ``Sec-GPC: 1``); when the
browser already has a subject, advertising is also withdrawn on its ledger (source ``optout``). A
plain HTML form can post it: the answer is a page in Chinese and English, or JSON for
clients that ask for it.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..core.consent import evaluate, honour_refusal, now_text
from ..core.records import EMPTY
from .identity import caller
from .mailing import page
from .services import services

bp = Blueprint("optout", __name__)
MAX_FORM_BYTES = 4 * 1024


@bp.post("/v1/optout")
def post_optout() -> Response:
    svc = services()
    svc.origins.check_write(request)
    request.max_content_length = MAX_FORM_BYTES  # the form holds nothing the gateway reads
    who = caller()
    done = None
    if who.sid is not None:
        done = honour_refusal(svc, who, svc.store.read_consent(who.sid), "optout")
    state = evaluate(svc.catalogue, svc.store.read_consent(who.sid) if who.sid else EMPTY)
    if request.accept_mimetypes.best == "application/json" or request.is_json:
        resp = jsonify(
            {
                "optout": True,
                "withdrawn": done is not None,
                "deleted": done.deleted if done else {},
                "advertising": svc.catalogue.advertising in state.granted,
            }
        )
    else:
        resp = page("optout_done")
    resp.headers.add("Set-Cookie", svc.cookies.optout_header(svc.tokens.sign_optout(now_text())))
    resp.headers["Cache-Control"] = "no-store"
    return resp
