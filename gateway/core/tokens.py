"""Signed identity and consent tokens.

A subject id is 128 random bits written as 32 hex digits: letters and digits only, no
personal information (policy Note 1). It travels signed, as the ``_vid`` cookie or the APP's
``X-Subject`` header, and a token that does not verify under any configured key is treated
as no subject at all (fail closed, like Flask's session interface). ``_consent`` is a signed,
JS-readable cache of the ledger so the browser SDK knows what it may send. The gateway uses it
only as a hint of what to prepare: the event script stores nothing unless the ledger's head
still matches the hint, and checks every purpose's grant on the ledger itself.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from itsdangerous import BadSignature, Signer, URLSafeSerializer

VID_COOKIE = "_vid"
CONSENT_COOKIE = "_consent"
OPTOUT_COOKIE = "_optout"  # a standing refusal of advertising, posted to /v1/optout
SUBJECT_HEADER = "X-Subject"

CACHE_SIZE = 8_192  # tokens remembered per process, per kind (a few MiB at most)
_SUBJECT_RE = re.compile(r"[0-9a-f]{32}")


def newest_last(keys: Sequence[str | bytes]) -> list[bytes]:
    """Configured keys (newest first) as itsdangerous takes them: bytes, newest last."""
    return [k.encode() if isinstance(k, str) else k for k in reversed(keys)]


def new_subject_id() -> str:
    return secrets.token_hex(16)


def is_subject_id(value: object) -> bool:
    """A subject id as the gateway makes them: 32 lowercase hex digits."""
    return isinstance(value, str) and _SUBJECT_RE.fullmatch(value) is not None


class Tokens:
    """Signs and verifies subject tokens and consent cookies with rotating keys.

    ``keys`` is newest first, as configured; itsdangerous wants newest last. Each token kind
    has its own salt, so a signature made for one can never pass as the other.
    """

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ValueError("at least one secret key is required")
        ordered = newest_last(keys)
        self._subject = Signer(ordered, salt="gateway.subject", digest_method=hashlib.sha256)
        self._consent = URLSafeSerializer(ordered, salt="gateway.consent")
        self._optout = Signer(ordered, salt="gateway.optout", digest_method=hashlib.sha256)
        # A visitor's cookies come back unchanged on every beacon: remember the answers
        # (pure functions of the token and the keys) instead of recomputing HMACs.
        self._verify = lru_cache(maxsize=CACHE_SIZE)(self._verify_subject)
        self._sign = lru_cache(maxsize=CACHE_SIZE)(self._sign_subject)
        self._claim = lru_cache(maxsize=CACHE_SIZE)(self._read_consent)
        self._optout_ok = lru_cache(maxsize=CACHE_SIZE)(self._verify_optout)

    def sign_subject(self, subject_id: str) -> str:
        return self._sign(subject_id)

    def verify_subject(self, token: str | None) -> str | None:
        """The subject id a token carries, or None when it is absent, malformed or forged."""
        if not token or len(token) > 200:  # checked before the cache: it holds tokens
            return None
        return self._verify(token)

    def read_consent(self, value: str | None) -> Mapping[str, Any] | None:
        """The consent cookie's claim (read-only: answers are shared), or None if forged."""
        if not value or len(value) > 1024:  # a genuine one is a few hundred characters
            return None
        return self._claim(value)

    def sign_optout(self, at: str) -> str:
        """The ``_optout`` cookie: bound to no subject, so it holds before any consent."""
        return self._optout.sign(at).decode("ascii")

    def verify_optout(self, value: str | None) -> bool:
        if not value or len(value) > 200:
            return False
        return self._optout_ok(value)

    def _verify_optout(self, value: str) -> bool:
        try:
            self._optout.unsign(value)
        except (BadSignature, UnicodeError, ValueError):
            return False
        return True

    def _sign_subject(self, subject_id: str) -> str:
        return self._subject.sign(subject_id).decode("ascii")

    def _verify_subject(self, token: str) -> str | None:
        try:
            sid = self._subject.unsign(token).decode("ascii")
        except (BadSignature, UnicodeError, ValueError):
            return None
        return sid if _SUBJECT_RE.fullmatch(sid) else None

    def sign_consent(self, version: str, granted: Sequence[str], head: str) -> str:
        """``head``: a prefix of the ledger head the state was read at (see ``collection.py``)."""
        return self._consent.dumps({"v": version, "p": sorted(granted), "h": head})

    def _read_consent(self, value: str) -> Mapping[str, Any] | None:
        try:
            data = self._consent.loads(value)
        except BadSignature:
            return None
        return MappingProxyType(data) if isinstance(data, dict) else None
