"""``POST /v1/subjects``: an APP installation gets its subject.

The token is the same signed id a browser holds in ``_vid``; the APP sends it back as
``X-Subject``. Creating a subject stores nothing: until the installation consents there is
nothing to keep, and the token proves itself by its signature. Each one takes a token from
its address's new-subjects bucket (ratelimit.py): tokens made in bulk could otherwise create
subjects in bulk later.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..core.tokens import new_subject_id
from .services import services

bp = Blueprint("subjects", __name__)


@bp.post("/v1/subjects")
def create_subject() -> Response:
    svc = services()
    svc.origins.check_write(request)
    svc.store.take_new_subject(svc.addresses(request.remote_addr))
    sid = new_subject_id()
    resp = jsonify({"token": svc.tokens.sign_subject(sid), "subject": sid})
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    return resp
