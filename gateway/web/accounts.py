"""The accounts API of the platform's backend (API key scope ``accounts``): which subjects an
account logged in on, and the account's coarse company traits, for marketers' audience counts
(clause 3(2) item 1: statistics only) to count people rather than devices.

* ``POST /v1/accounts/<account>/subjects`` ``{"subject": "<id or signed token>"}``: link (a
  subject is linked to one account at a time: linking it elsewhere moves it) -> 200
  ``{"account", "subject", "linked": true}``.
* ``DELETE /v1/accounts/<account>/subjects/<subject>``: unlink -> ``{"linked": false,
  "was_linked": bool}``; an account left with no subject loses its traits.
* ``PUT /v1/accounts/<account>/traits`` ``{"industry"?, "company_size"?, "province"?}``
  (null removes one) -> ``{"account", "traits": {...}}``: only the catalogue's traits and
  values (``GET /v1/policy`` ``traits``); a province's short name is taken for its full name;
  anything else, a 400 naming it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..core.caller import subject_or_token
from .auth import authorised
from .payload import read_object

bp = Blueprint("accounts", __name__)

SCOPE = "accounts"


def _body() -> dict[str, Any]:
    return read_object(request, max_bytes=4096, max_depth=3)


@bp.post("/v1/accounts/<path:account>/subjects")
def link(account: str) -> Response:
    svc = authorised(SCOPE)
    account = svc.accounts.account(account)
    sid = subject_or_token(svc.tokens, _body().get("subject"))
    svc.accounts.link(account, sid)
    return jsonify({"account": account, "subject": sid, "linked": True})


@bp.delete("/v1/accounts/<path:account>/subjects/<subject>")
def unlink(account: str, subject: str) -> Response:
    svc = authorised(SCOPE)
    account = svc.accounts.account(account)
    sid = subject_or_token(svc.tokens, subject)
    was = svc.accounts.unlink(account, sid)
    return jsonify({"account": account, "subject": sid, "linked": False, "was_linked": was})


@bp.put("/v1/accounts/<path:account>/traits")
def traits(account: str) -> Response:
    svc = authorised(SCOPE)
    account = svc.accounts.account(account)
    kept = svc.accounts.set_traits(account, _body())
    return jsonify({"account": account, "traits": kept})
