"""Saved login for a limited period (clause 2(2) item 1), only when ``saved_login`` is granted.

The platform's backend (a server API key with scope ``saved_login``) asks for a token when a
person ticks "keep me logged in"; passwords never pass through the gateway. A token is
``<selector>.<validator>``: the selector finds the record, and the gateway keeps only the
SHA-256 of the validator, so a copy of the store cannot be replayed as logins. Each resume
rotates the validator; presenting one that was already rotated away means two parties hold
the token (one stole it), so every saved login of the account is revoked and the answer
says so. A token's lifetime is what the backend asks for, never more than
``SAVED_LOGIN_MAX_S`` (30 days by default), and it ends at that instant exactly (the check
uses the server's clock inside the script, not only the key's expiry).

Keys: ``sl:<selector>`` (hash: account, sid, hash, old hashes, expires ms), and the sets
``{s:<id>}:logins`` and ``acct:<sha256(account)>:logins`` of selectors, so that withdrawing
``saved_login`` or logging out everywhere revokes every token at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request
from werkzeug.http import dump_cookie

from .apikeys import authorised
from .consent import granted_now
from .cookies import is_subject_id
from .errors import GatewayError, ValidationFailed
from .payload import read_json
from .services import Services
from .store import subject_prefix

bp = Blueprint("logins", __name__)

SCOPE = "saved_login"
PURPOSE = "saved_login"
COOKIE = "saved_login"
OLD_KEPT = 8  # rotated validators remembered per token, to recognise a stolen copy
_SELECTOR_RE = re.compile(r"[A-Za-z0-9_-]{16}")
_VALIDATOR_RE = re.compile(r"[A-Za-z0-9_-]{43}")

# KEYS: the token's record. ARGV: hash of the presented validator, hash of the next one.
_RESUME_LUA = """
local rec = redis.call('HMGET', KEYS[1], 'hash', 'old', 'expires', 'account', 'sid')
if not rec[1] then return {'unknown'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(rec[3]) then
  redis.call('DEL', KEYS[1])
  return {'expired'}
end
if rec[1] == ARGV[1] then
  local old = ARGV[1]
  local n = 1
  for h in string.gmatch(rec[2] or '', '%S+') do
    if n >= tonumber(ARGV[3]) then break end
    old = old .. ' ' .. h
    n = n + 1
  end
  redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'old', old)
  return {'ok', rec[4], rec[5], rec[3]}
end
if string.find(' ' .. (rec[2] or '') .. ' ', ' ' .. ARGV[1] .. ' ', 1, true) then
  return {'reused', rec[4], rec[5]}
end
return {'mismatch'}
"""


class InvalidSavedLogin(GatewayError):
    status = 401
    code = "invalid_saved_login"


class SavedLoginReused(GatewayError):
    status = 401
    code = "saved_login_reused"


class NotGranted(GatewayError):
    status = 403
    code = "saved_login_not_granted"


def _hash(validator: str) -> str:
    return hashlib.sha256(validator.encode()).hexdigest()


def _account_key(account: str) -> str:
    return "acct:" + hashlib.sha256(account.encode("utf-8")).hexdigest() + ":logins"


def _subject_key(sid: str) -> str:
    return subject_prefix(sid) + ":logins"


class SavedLogins:
    def __init__(self, client: redis.Redis, max_s: int) -> None:
        self.r = client
        self.max_s = max_s
        self._resume = client.register_script(_RESUME_LUA)

    def issue(self, account: str, sid: str, lifetime_s: int) -> tuple[str, int]:
        """A new token and its expiry (ms since the epoch)."""
        selector = secrets.token_urlsafe(12)
        validator = secrets.token_urlsafe(32)
        expires = int(time.time() * 1000) + min(lifetime_s, self.max_s) * 1000
        key = "sl:" + selector
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={"account": account, "sid": sid, "hash": _hash(validator), "expires": expires},
        )
        pipe.pexpireat(key, expires)
        for index in (_subject_key(sid), _account_key(account)):
            pipe.sadd(index, selector)
            pipe.pexpire(index, self.max_s * 1000, gt=True)
            pipe.pexpire(index, self.max_s * 1000, nx=True)
        pipe.execute()
        return f"{selector}.{validator}", expires

    def resume(self, token: str) -> tuple[str, str, str, int]:
        """(account, subject, the next token, expiry ms); raises on anything else."""
        selector, _, validator = token.partition(".")
        if not _SELECTOR_RE.fullmatch(selector) or not _VALIDATOR_RE.fullmatch(validator):
            raise InvalidSavedLogin("not a saved-login token")
        fresh = secrets.token_urlsafe(32)
        answer = self._resume(
            keys=["sl:" + selector], args=[_hash(validator), _hash(fresh), OLD_KEPT]
        )
        status = answer[0]
        if status == "ok":
            return answer[1], answer[2], f"{selector}.{fresh}", int(answer[3])
        if status == "reused":
            revoked = self.revoke_account(answer[1])
            raise SavedLoginReused(
                "this token was already used and replaced: it may have been stolen, so every "
                f"saved login of the account was revoked ({revoked})",
                fields={"revoked": str(revoked)},
            )
        raise InvalidSavedLogin(
            f"the saved login is {'expired' if status == 'expired' else 'not valid'}"
        )

    def revoke_token(self, token: str) -> int:
        selector = token.partition(".")[0]
        if not _SELECTOR_RE.fullmatch(selector):
            return 0
        return self._revoke([selector])

    def revoke_account(self, account: str) -> int:
        return self._revoke(list(self.r.smembers(_account_key(account))))

    def revoke_subject(self, sid: str) -> int:
        return self._revoke(list(self.r.smembers(_subject_key(sid))))

    def _revoke(self, selectors: list[str]) -> int:
        """Delete the tokens and their index entries; how many existed."""
        if not selectors:
            return 0
        records = [self.r.hmget("sl:" + s, "account", "sid") for s in selectors]
        pipe = self.r.pipeline(transaction=True)
        gone = 0
        for selector, (account, sid) in zip(selectors, records, strict=True):
            pipe.delete("sl:" + selector)
            gone += account is not None
            if account is not None:
                pipe.srem(_account_key(account), selector)
            if sid is not None:
                pipe.srem(_subject_key(sid), selector)
        pipe.execute()
        return gone


# ---------------------------------------------------------------------- the backend's API


def _body() -> dict[str, Any]:
    body = read_json(request, max_bytes=4096, max_depth=3)
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be an object")
    return body


def _string(body: dict[str, Any], name: str, limit: int = 256) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit or not _encodable(value):
        raise ValidationFailed(f"{name} is required", fields={name: f"1-{limit} characters"})
    return value


def _encodable(value: str) -> bool:
    """JSON may carry lone surrogates (``\\ud800``), which no store can hold as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _subject(svc: Services, value: str) -> str:
    """A subject id, or a signed subject token (the _vid cookie's or X-Subject's value)."""
    sid = value if is_subject_id(value) else svc.tokens.verify_subject(value)
    if sid is None:
        raise ValidationFailed("not a subject", fields={"subject": "an id or a signed token"})
    return sid


def _granted(svc: Services, sid: str) -> bool:
    return PURPOSE in granted_now(svc.catalogue, svc.store.read_consent(sid), svc.min_grant)


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
    sid = _subject(svc, _string(body, "subject", 200))
    lifetime = body.get("lifetime_s", svc.logins.max_s)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime <= 0:
        raise ValidationFailed(
            "lifetime_s: a positive number of seconds", fields={"lifetime_s": "int > 0"}
        )
    if not _granted(svc, sid):
        raise NotGranted("the person has not granted saved_login: no token is issued")
    token, expires = svc.logins.issue(account, sid, lifetime)
    resp = _answer(svc, account, sid, token, expires)
    resp.status_code = 201
    return resp


@bp.post("/v1/saved-login/resume")
def resume() -> Response:
    svc = authorised(SCOPE)
    token = _string(_body(), "token", 100)
    account, sid, fresh, expires = svc.logins.resume(token)
    if not _granted(svc, sid):  # withdrawn since (its tokens were revoked then; belt and braces)
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
        n = svc.logins.revoke_subject(_subject(svc, _string(body, "subject", 200)))
    else:
        raise ValidationFailed("give token, account or subject")
    return jsonify({"revoked": n})
