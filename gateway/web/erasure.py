"""Erasing one subject on request (policy clause 4: "delete it on written request").

``DELETE /v1/subject``: the person's own browser or APP (its signed ``_vid`` or
``X-Subject``), refused cross-site like every write. ``DELETE /v1/subjects/<id>``: the
platform's staff acting on a written request, with a server API key of scope ``erasure``.

Everything held about the subject goes at once: its event parts in every purpose stream, its
consent state and ledger, dedup ids, index, saved logins and SMS codes. Its place on the
senders' suppression lists stays, so that it is never contacted again. The answer says what
was removed, with a signed receipt listing it (``core/erasure.py``); the browser's cookies
are cleared. The values also leave the store's files
within ``ERASURE_COMPACT_S`` (``compaction``: an append-only file rewrite).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..core.caller import subject_param
from ..core.erasure import erase
from .auth import authorised
from .identity import caller
from .services import services

bp = Blueprint("erasure", __name__)

SCOPE = "erasure"


@bp.delete("/v1/subject")
def erase_own() -> Response:
    svc = services()
    svc.origins.check_write(request)
    who = caller()
    if who.sid is None:
        return jsonify({"subject": None, "erased": False})
    done = erase(svc, who.sid, "subject")
    resp = jsonify({"subject": who.sid, "erased": True, **done})
    if who.via == "cookie":
        svc.cookies.clear_subject(resp)
        who.sid = None  # and no fresh _vid on this answer
    return resp


@bp.delete("/v1/subjects/<sid>")
def erase_on_request(sid: str) -> Response:
    svc = authorised(SCOPE)
    sid = subject_param(sid)
    return jsonify({"subject": sid, "erased": True, **erase(svc, sid, "request")})
