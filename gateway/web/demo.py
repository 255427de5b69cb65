"""The demo shop's backend, for ``/demo`` under ``--dev`` only (registered when ``DEV``).

It plays the platform's login server, so that the demo can show where saved login is granted:
on the login form, by the person ticking "keep me logged in for 30 days" (policy clause 2(2)
item 1, "by your choice"), never by the consent banner.

- ``GET /demo/login``: ``{"demo_backend": true, "lifetime_s"}``; the page asks before it
  offers the form (without ``--dev`` this is 404 and the form says why it is off).
- ``POST /demo/login`` ``{"account", "keep": bool}``: a login without a password (a demo).
  With ``keep`` the page has just granted ``saved_login`` through the SDK (source
  ``login``); this issues a saved-login token for the caller's subject (its ``_vid``
  cookie) with the gateway's own service, as the platform's backend does through ``POST
  /v1/saved-login``, and sets the cookie that answer's ``set_cookie`` holds. 403
  ``saved_login_not_granted`` when the subject has not granted it. Without ``keep`` nothing
  about saved login is read or recorded. Answers ``{"account", "subject", "saved_login":
  null | {"expires_at_ms", "max_age_s", "cookie"}}``.
- ``POST /demo/logout``: revokes the browser's saved login (its cookie), if any, and clears
  the cookie: ``{"revoked": n}``.

Writes are refused cross-site like the gateway's own.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..core.errors import SavedLoginNotGranted, ValidationFailed
from . import logins
from .identity import caller
from .payload import read_object
from .services import services

bp = Blueprint("demo", __name__)

LIFETIME_S = 30 * 86_400  # "keep me logged in for 30 days"
MAX_ACCOUNT = 64


def _lifetime() -> int:
    return min(LIFETIME_S, services().logins.max_s)


def _body() -> dict[str, Any]:
    return read_object(request, max_bytes=4096, max_depth=2)


@bp.get("/demo/login")
def available() -> Response:
    return jsonify({"demo_backend": True, "lifetime_s": _lifetime()})


@bp.post("/demo/login")
def login() -> Response:
    svc = services()
    svc.origins.check_write(request)
    body = _body()
    account = body.get("account")
    if not isinstance(account, str) or not 0 < len(account.strip()) <= MAX_ACCOUNT:
        raise ValidationFailed(
            "account is required", fields={"account": f"1-{MAX_ACCOUNT} characters"}
        )
    account = account.strip()
    keep = body.get("keep", False)
    if not isinstance(keep, bool):
        raise ValidationFailed("keep is true or false", fields={"keep": "boolean"})
    sid = caller().sid
    if not keep:
        return jsonify({"account": account, "subject": sid, "saved_login": None})
    if sid is None or not logins.granted(svc, sid):
        raise SavedLoginNotGranted(
            "saved_login is not granted: the login form grants it first (source 'login')"
        )
    token, expires = svc.logins.issue(account, sid, _lifetime())
    max_age = max(0, (expires - int(time.time() * 1000)) // 1000)
    cookie = logins.cookie_header(svc, token, max_age)
    resp = jsonify(
        {
            "account": account,
            "subject": sid,
            "saved_login": {
                "expires_at_ms": expires,
                "max_age_s": max_age,
                "cookie": cookie.partition("=")[0],
            },
        }
    )
    resp.headers.add("Set-Cookie", cookie)
    return resp


@bp.post("/demo/logout")
def logout() -> Response:
    svc = services()
    svc.origins.check_write(request)
    name = logins.cookie_header(svc, "", 0).partition("=")[0]
    token = request.cookies.get(name)
    revoked = svc.logins.revoke_token(token) if token else 0
    resp = jsonify({"revoked": revoked})
    resp.headers.add("Set-Cookie", logins.cookie_header(svc, "", 0))
    return resp
