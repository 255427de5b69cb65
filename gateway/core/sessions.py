"""The marketers' dashboard's sessions: a random id in the store, naming an API key by its
digest, and a signed cookie carrying the id.

A marketer types an ``audiences`` key into the dashboard once; the gateway keeps a session
(``SessionStore``: id -> the key's SHA-256 digest, for ``max_age_s``) and answers with a
cookie (HttpOnly, SameSite=Strict, Secure) holding the id, signed (itsdangerous, a salt of
its own), and a CSRF token; the key itself is kept nowhere a page script can read it. Every
request finds the session in the store and the key again by its digest, so signing out (the
session deleted) and revoking the key (the digest finds nothing) both end it at once. The
store holds no cookie: whoever reads the store and holds the secret keys still cannot make
one for a session that does not exist, nor revive one that ended.

The CSRF token is an HMAC of the session id under the same keys: the page holds it in memory
and sends it with every write (``X-CSRF-Token``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from itsdangerous import BadSignature, Signer

from .ports import SessionStore
from .tokens import newest_last

COOKIE = "gw_marketer"  # over plain HTTP (--dev), where __Host- cannot be used
# Over HTTPS: a __Host- cookie (Secure, Path=/, no Domain) cannot be set by a sibling
# subdomain (the shop's): nobody can slip a session of another key into the marketer's browser.
SECURE_COOKIE = "__Host-gw_marketer"


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


MAX_AGE_S = 8 * 3600  # a working day; signing in again costs a paste


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    digest: str  # the API key's SHA-256, hex


class Sessions:
    def __init__(
        self, keys: Sequence[str | bytes], store: SessionStore, max_age_s: int = MAX_AGE_S
    ) -> None:
        ordered = newest_last(keys)
        self.store = store
        self.max_age_s = max_age_s
        self._cookie = Signer(
            ordered, salt="gateway.marketers.session", digest_method=hashlib.sha256
        )
        self._csrf = Signer(ordered, salt="gateway.marketers.csrf", digest_method=hashlib.sha256)

    def issue(self, digest: str) -> tuple[str, Session]:
        """A new session for the key of ``digest``: the cookie's value and the session."""
        session = Session(secrets.token_urlsafe(24), digest)
        self.store.put(session.id, digest, self.max_age_s * 1000)
        return self._cookie.sign(session.id).decode(), session

    def read(self, value: str | None) -> Session | None:
        """The session a cookie names, or None: absent, forged, ended or expired."""
        if not value or len(value) > 256:
            return None
        try:
            session_id = self._cookie.unsign(value).decode()
        except (BadSignature, UnicodeDecodeError):
            return None
        digest = self.store.get(session_id)
        return None if digest is None else Session(session_id, digest)

    def end(self, session: Session) -> None:
        self.store.delete(session.id)

    def csrf(self, session: Session) -> str:
        return self._csrf.get_signature(session.id).decode()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        if not token or len(token) > 128:
            return False
        return self._csrf.verify_signature(session.id.encode(), token.encode())
