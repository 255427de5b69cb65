"""The marketers' dashboard's sessions: a signed cookie that names an API key by its digest.

A marketer types an ``audiences`` key into the dashboard once; the gateway answers with a
session cookie (HttpOnly, SameSite=Strict, Secure) and a CSRF token, and the key itself is
kept nowhere a page script can read. The cookie holds the key's SHA-256 digest (what the store
finds keys by, ``apikeys.py``) and a random nonce, signed and timed (itsdangerous, a salt of
its own: no other token of the gateway passes as one). Every request finds the key again by
that digest, so revoking the key ends its sessions at once, and a session lasts
``max_age_s`` at most whatever the key does.

The CSRF token is an HMAC of the nonce under the same keys: the page holds it in memory and
sends it with every write (``X-CSRF-Token``); another site can neither read it nor, with a
SameSite=Strict cookie, make the browser send the session at all.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, Signer, URLSafeTimedSerializer

from .tokens import newest_last

COOKIE = "gw_marketer"
MAX_AGE_S = 8 * 3600  # a working day; signing in again costs a paste
_DIGEST_LEN = 64


@dataclass(frozen=True, slots=True)
class Session:
    digest: str  # the API key's SHA-256, hex
    nonce: str


class Sessions:
    def __init__(self, keys: Sequence[str | bytes], max_age_s: int = MAX_AGE_S) -> None:
        ordered = newest_last(keys)
        self.max_age_s = max_age_s
        self._cookie = URLSafeTimedSerializer(ordered, salt="gateway.marketers.session")
        self._csrf = Signer(ordered, salt="gateway.marketers.csrf", digest_method=hashlib.sha256)

    def issue(self, digest: str) -> tuple[str, Session]:
        """A new session for the key of ``digest``: the cookie's value and the session."""
        session = Session(digest, secrets.token_urlsafe(16))
        return self._cookie.dumps({"d": digest, "n": session.nonce}), session

    def read(self, value: str | None) -> Session | None:
        """The session a cookie carries, or None: absent, forged, expired or malformed."""
        if not value or len(value) > 512:
            return None
        try:
            claim: Any = self._cookie.loads(value, max_age=self.max_age_s)
        except BadSignature:  # SignatureExpired is one
            return None
        if not isinstance(claim, dict):
            return None
        digest, nonce = claim.get("d"), claim.get("n")
        if not isinstance(digest, str) or len(digest) != _DIGEST_LEN or not isinstance(nonce, str):
            return None
        return Session(digest, nonce)

    def csrf(self, session: Session) -> str:
        return self._csrf.get_signature(session.nonce).decode()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        if not token or len(token) > 128:
            return False
        return self._csrf.verify_signature(session.nonce.encode(), token.encode())
