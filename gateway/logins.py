"""Saved login for a limited period (clause 2(2) item 1), only when ``saved_login`` is granted.

The platform's backend (a server API key with scope ``saved_login``) asks for a token when a
person ticks "keep me logged in"; passwords never pass through the gateway. A token is
``<selector>.<generation>.<mac>``: the selector finds the record, the generation counts the
resumes, and the mac is an HMAC-SHA256 under the gateway's secret keys (``SECRET_KEYS``,
newest first; a token made under any configured key resumes) over the selector, the
generation and a random value kept in the record. The store keeps no token and nothing a
token can be computed from without the keys, so a copy of it cannot be replayed as logins.

Each resume moves the login to the next generation (atomically, in one script). A genuine
token of an earlier generation means two parties hold the login (one copied it), so every
saved login of the account is revoked and the answer says so: this is recognised for the
whole life of the login, however many rotations ago the copy was made, in one integer per
login (a list of rotated hashes, kept before, forgot after 8). A token whose mac is wrong is
refused and revokes nothing, so knowing a selector is not enough to log anyone out. A
token's lifetime is what the backend asks for, never more than ``SAVED_LOGIN_MAX_S`` (30
days by default), and it ends at that instant exactly (the check uses the store's clock
inside the script, not only the key's expiry).

Keeping no more than needed (clause 4): the account is needed only to answer ``resume`` and
to show the person what is held, so the record keeps it sealed (AES-256-GCM from
``cryptography``, a key derived from each secret key with HKDF, the record's selector as
associated data so a sealed account cannot be moved to another record), never in plain
text. The account index is ``acct:<HMAC(key, account)>:logins``, a keyed hash, so a
guessable account name cannot be found by hashing guesses; it is written under the newest
key and read under every configured one, and a resume moves an older login's index entry
and seal to the newest key, so dropping an old key later loses nothing that was used since.

Keys: ``sl:<selector>`` (hash: ``sid``, ``acct`` the keyed hash of the account, ``sealed``,
``nonce``, ``gen``, ``issued`` and ``expires`` ms; expires then), and the sets
``{s:<id>}:logins`` and ``acct:<hmac>:logins`` of selectors, so that withdrawing
``saved_login`` or logging out everywhere revokes every token at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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
SHOWN_SELECTOR = 6  # characters of a selector shown to the person (of 16: not enough to revoke)
_SELECTOR_RE = re.compile(r"[A-Za-z0-9_-]{16}")
_GENERATION_RE = re.compile(r"0|[1-9][0-9]{0,9}")  # exact in Lua's doubles
_MAC_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_MAC_CONTEXT = b"gateway.saved-login.token:"
_ACCOUNT_CONTEXT = b"gateway.saved-login.account:"
_SEAL_INFO = b"gateway.saved-login.seal.v1"
_NONCE_BYTES = 12  # AES-GCM's standard nonce, random per seal

# KEYS: the record, the account index it is in, the newest key's account index.
# ARGV: the presented generation, the record's nonce as read when the mac was checked, the
# account sealed under the newest key ('' when it already is), the newest key's account hash
# ('' when the record already has it), the index lifetime (ms), the selector.
_RESUME_LUA = """
local rec = redis.call('HMGET', KEYS[1], 'gen', 'nonce', 'expires', 'acct')
if not rec[1] or rec[2] ~= ARGV[2] then return {'unknown'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(rec[3]) then
  redis.call('DEL', KEYS[1])
  return {'expired'}
end
local presented = tonumber(ARGV[1])
local current = tonumber(rec[1])
if presented < current then return {'reused'} end
if presented > current then return {'unknown'} end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'sealed', ARGV[3]) end
if ARGV[4] ~= '' and ARGV[4] ~= rec[4] then
  redis.call('SREM', KEYS[2], ARGV[6])
  redis.call('SADD', KEYS[3], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[5], 'GT')
  redis.call('PEXPIRE', KEYS[3], ARGV[5], 'NX')
  redis.call('HSET', KEYS[1], 'acct', ARGV[4])
end
return {'ok', tostring(gen), rec[3]}
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


def _account_key(account_hash: str) -> str:
    return "acct:" + account_hash + ":logins"


def _subject_key(sid: str) -> str:
    return subject_prefix(sid) + ":logins"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class SavedLogins:
    def __init__(self, client: redis.Redis, keys: Sequence[str | bytes], max_s: int) -> None:
        if not keys:
            raise ValueError("saved logins need at least one secret key")
        self.r = client
        self.max_s = max_s
        self._keys = [k.encode() if isinstance(k, str) else k for k in keys]  # newest first
        self._seals = [
            AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(k))
            for k in self._keys
        ]
        self._resume = client.register_script(_RESUME_LUA)

    # -- what a token, an account index and a seal are made of

    def _mac(self, key: bytes, selector: str, generation: int | str, nonce: str) -> str:
        message = _MAC_CONTEXT + f"{selector}.{generation}.{nonce}".encode()
        return _b64(hmac.digest(key, message, "sha256"))

    def _token(self, selector: str, generation: int, nonce: str) -> str:
        """Always under the newest key: a token made under an older one is replaced at the
        next resume, so retiring that key later logs out only logins unused since."""
        return f"{selector}.{generation}.{self._mac(self._keys[0], selector, generation, nonce)}"

    def _genuine(self, selector: str, generation: str, nonce: str, mac: str) -> bool:
        return any(
            hmac.compare_digest(self._mac(key, selector, generation, nonce), mac)
            for key in self._keys
        )

    def _account_hash(self, account: str, key: bytes) -> str:
        return hmac.new(key, _ACCOUNT_CONTEXT + account.encode("utf-8"), hashlib.sha256).hexdigest()

    def _seal(self, selector: str, account: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._seals[0].encrypt(nonce, account.encode("utf-8"), b"sl:" + selector.encode())
        return _b64(nonce + sealed)

    def _unseal(self, selector: str, sealed: str) -> tuple[str, int] | None:
        """The account and the index of the key that sealed it (0: the newest); None when no
        configured key opens it (sealed under a retired key, or not sealed for this record)."""
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _NONCE_BYTES + 16:  # nonce and GCM tag
            return None
        nonce, sealed_bytes = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        record = b"sl:" + selector.encode()
        for index, aead in enumerate(self._seals):
            try:
                plain = aead.decrypt(nonce, sealed_bytes, record)
            except InvalidTag:
                continue
            return plain.decode("utf-8"), index
        return None

    # -- the operations

    def issue(self, account: str, sid: str, lifetime_s: int) -> tuple[str, int]:
        """A new token and its expiry (ms since the epoch)."""
        selector = secrets.token_urlsafe(12)
        nonce = secrets.token_hex(16)
        issued = int(time.time() * 1000)
        expires = issued + min(lifetime_s, self.max_s) * 1000
        account_hash = self._account_hash(account, self._keys[0])
        key = "sl:" + selector
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "sid": sid,
                "acct": account_hash,
                "sealed": self._seal(selector, account),
                "nonce": nonce,
                "gen": 0,
                "issued": issued,
                "expires": expires,
            },
        )
        pipe.pexpireat(key, expires)
        for index in (_subject_key(sid), _account_key(account_hash)):
            pipe.sadd(index, selector)
            pipe.pexpire(index, self.max_s * 1000, gt=True)
            pipe.pexpire(index, self.max_s * 1000, nx=True)
        pipe.execute()
        return self._token(selector, 0, nonce), expires

    def resume(self, token: str) -> tuple[str, str, str, int]:
        """(account, subject, the next token, expiry ms); raises on anything else.

        The mac is checked before the script runs, so only a genuine token can rotate a login
        or revoke an account's; the script then compares generations and rotates in one step,
        so of two resumes racing with one token exactly one wins and the other is a reuse.
        This costs a read before the script (the mac covers the record's random value, which
        only the store has) and about 35 µs of CPU for the macs, seal and account hash
        (measured here with two keys), once per browser session.
        """
        parts = token.split(".")
        if (
            len(parts) != 3
            or not _SELECTOR_RE.fullmatch(parts[0])
            or not _GENERATION_RE.fullmatch(parts[1])
            or not _MAC_RE.fullmatch(parts[2])
        ):
            raise InvalidSavedLogin("not a saved-login token")
        selector, generation, mac = parts
        key = "sl:" + selector
        nonce, sealed, account_hash, sid = self.r.hmget(key, "nonce", "sealed", "acct", "sid")
        if nonce is None or sealed is None or account_hash is None or sid is None:
            raise InvalidSavedLogin("the saved login is not valid")
        if not self._genuine(selector, generation, nonce, mac):
            raise InvalidSavedLogin("the saved login is not valid")
        opened = self._unseal(selector, sealed)
        if opened is None:  # sealed under a key no longer configured
            raise InvalidSavedLogin("the saved login is not valid")
        account, sealed_by = opened
        newest_hash = self._account_hash(account, self._keys[0])
        answer = self._resume(
            keys=[key, _account_key(account_hash), _account_key(newest_hash)],
            args=[
                generation,
                nonce,
                self._seal(selector, account) if sealed_by else "",
                "" if newest_hash == account_hash else newest_hash,
                self.max_s * 1000,
                selector,
            ],
        )
        status = answer[0]
        if status == "ok":
            return account, sid, self._token(selector, int(answer[1]), nonce), int(answer[2])
        if status == "reused":
            revoked = self.revoke_account(account)
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
        """Every login of the account, found under each configured key (logins issued before a
        key rotation and not resumed since are indexed under the older key)."""
        indexes = [_account_key(self._account_hash(account, key)) for key in self._keys]
        return self._revoke(list(self.r.sunion(indexes)))

    def revoke_subject(self, sid: str) -> int:
        return self._revoke(list(self.r.smembers(_subject_key(sid))))

    def _revoke(self, selectors: list[str]) -> int:
        """Delete the tokens and their index entries; how many existed."""
        if not selectors:
            return 0
        read = self.r.pipeline(transaction=False)
        for selector in selectors:
            read.hmget("sl:" + selector, "acct", "sid")
        pipe = self.r.pipeline(transaction=True)
        gone = 0
        for selector, (account_hash, sid) in zip(selectors, read.execute(), strict=True):
            pipe.delete("sl:" + selector)
            gone += sid is not None
            if account_hash is not None:
                pipe.srem(_account_key(account_hash), selector)
            if sid is not None:
                pipe.srem(_subject_key(sid), selector)
        pipe.execute()
        return gone

    def held(self, sid: str) -> list[dict[str, Any]]:
        """What is kept about each saved login of ``sid`` (policy clause 6), oldest first.

        Read from the subject's own index and records only. The account is unsealed so the
        person recognises it (``None`` if it was sealed under a key since retired); the
        selector is shown only in part: with the whole of it anyone holding an API key could
        revoke the login, and the token's mac is never kept, so it cannot be shown.
        """
        selectors = sorted(self.r.smembers(_subject_key(sid)))
        pipe = self.r.pipeline(transaction=False)
        for selector in selectors:
            pipe.hmget("sl:" + selector, "sid", "sealed", "gen", "issued", "expires")
        held: list[dict[str, Any]] = []
        for selector, row in zip(selectors, pipe.execute(), strict=True):
            owner, sealed, gen, issued, expires = row
            if owner != sid or sealed is None:  # expired since it was indexed
                continue
            opened = self._unseal(selector, sealed)
            held.append(
                {
                    "account": opened[0] if opened else None,
                    "issued_at_ms": int(issued),
                    "expires_at_ms": int(expires),
                    "rotations": int(gen),
                    "selector_prefix": selector[:SHOWN_SELECTOR],
                }
            )
        held.sort(key=lambda login: (login["issued_at_ms"], login["selector_prefix"]))
        return held


# ---------------------------------------------------------------------- the backend's API


def _body() -> dict[str, Any]:
    body = read_json(request, max_bytes=4096, max_depth=3)
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be an object")
    return body


def _string(body: dict[str, Any], name: str, limit: int = 256) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ValidationFailed(f"{name} is required", fields={name: f"1-{limit} characters"})
    return value


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
