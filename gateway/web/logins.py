"""The saved-login API of the platform's backend (scope ``saved_login``): issue, resume,
revoke. Clause 2(2) item 1: a login kept for a limited period, only when ``saved_login`` is
granted; the token scheme is ``core/savedlogin.py``."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.http import dump_cookie

from ..core.caller import subject_or_token
from ..core.consent import granted_now
from ..core.errors import InvalidSavedLogin, SavedLoginNotGranted, ValidationFailed
from .auth import authorised
from .payload import read_object
from .services import Services

bp = Blueprint("logins", __name__)

SCOPE = "saved_login"
COOKIE = "saved_login"


# ---------------------------------------------------------------------- the backend's API


def _body() -> dict[str, Any]:
    return read_object(request, max_bytes=4096, max_depth=3)


def _string(body: dict[str, Any], name: str, limit: int = 256) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ValidationFailed(f"{name} is required", fields={name: f"1-{limit} characters"})
    return value


def granted(svc: Services, sid: str) -> bool:
    """Whether ``sid`` granted the purpose with the saved-login role."""
    purpose = svc.catalogue.saved_login
    current = svc.store.read_consent(sid)
    return purpose is not None and purpose in granted_now(svc.catalogue, current, svc.min_grant)


def _answer(svc: Services, account: str, sid: str, token: str, expires: int) -> Response:
    max_age = max(0, (expires - int(time.time() * 1000)) // 1000)
    return jsonify(
        {
            "token": token,
            "account": account,
            "subject": sid,
            "expires_at_ms": expires,
            "max_age_s": max_age,
            "set_cookie": cookie_header(svc, token, max_age),
        }
    )


def cookie_header(svc: Services, token: str, max_age: int) -> str:
    """What the backend sends as Set-Cookie: HttpOnly, SameSite=Lax, Secure outside local
    development, ``__Host-`` when the cookie may carry it (Secure, no Domain)."""
    secure = svc.cookies.secure
    host_only = secure and not svc.cookies.domain
    return dump_cookie(
        ("__Host-" if host_only else "") + COOKIE,
        token,
        max_age=max_age,
        secure=secure,
        httponly=True,
        samesite="Lax",
        domain=None if host_only else svc.cookies.domain,
        path="/",
    )


@bp.post("/v1/saved-login")
def issue() -> Response:
    svc = authorised(SCOPE)
    body = _body()
    account = _string(body, "account")
    sid = subject_or_token(svc.tokens, _string(body, "subject", 200))
    lifetime = body.get("lifetime_s", svc.logins.max_s)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime <= 0:
        raise ValidationFailed(
            "lifetime_s: a positive number of seconds", fields={"lifetime_s": "int > 0"}
        )
    if not granted(svc, sid):
        raise SavedLoginNotGranted("the person has not granted saved_login: no token is issued")
    token, expires = svc.logins.issue(account, sid, lifetime)
    resp = _answer(svc, account, sid, token, expires)
    resp.status_code = 201
    return resp


@bp.post("/v1/saved-login/resume")
def resume() -> Response:
    svc = authorised(SCOPE)
    token = _string(_body(), "token", 100)
    account, sid, fresh, expires = svc.logins.resume(token)
    if not granted(svc, sid):  # withdrawn since (its tokens were revoked then; belt and braces)
        svc.logins.revoke_subject(sid)
        raise InvalidSavedLogin("the person withdrew saved_login")
    return _answer(svc, account, sid, fresh, expires)


@bp.delete("/v1/saved-login")
def revoke() -> Response:
    """``{"token"}``: this one; ``{"account"}``: log out everywhere; ``{"subject"}``: all of a
    subject's."""
    svc = authorised(SCOPE)
    body = _body()
    if "token" in body:
        n = svc.logins.revoke_token(_string(body, "token", 100))
    elif "account" in body:
        n = svc.logins.revoke_account(_string(body, "account"))
    elif "subject" in body:
        n = svc.logins.revoke_subject(subject_or_token(svc.tokens, _string(body, "subject", 200)))
    else:
        raise ValidationFailed("give token, account or subject")
    return jsonify({"revoked": n})
