"""Signed identity and consent tokens.

A subject id is 128 random bits written as 32 hex digits: letters and digits only, no
personal information (policy Note 1). It travels signed, as the ``_vid`` cookie or the APP's
``X-Subject`` header, and a token that does not verify under any configured key is treated
as no subject at all (fail closed, like Flask's session interface). ``_consent`` is a signed,
JS-readable cache of the ledger so the browser SDK knows what it may send; the gateway itself
never decides anything from it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Any

from itsdangerous import BadSignature, Signer, URLSafeSerializer

VID_COOKIE = "_vid"
CONSENT_COOKIE = "_consent"
SUBJECT_HEADER = "X-Subject"

_SUBJECT_RE = re.compile(r"[0-9a-f]{32}")


def new_subject_id() -> str:
    return secrets.token_hex(16)


class Tokens:
    """Signs and verifies subject tokens and consent cookies with rotating keys.

    ``keys`` is newest first, as configured; itsdangerous wants newest last. Each token kind
    has its own salt, so a signature made for one can never pass as the other.
    """

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ValueError("at least one secret key is required")
        ordered = list(reversed(list(keys)))
        self._subject = Signer(ordered, salt="gateway.subject", digest_method=hashlib.sha256)
        self._consent = URLSafeSerializer(ordered, salt="gateway.consent")

    def sign_subject(self, subject_id: str) -> str:
        return self._subject.sign(subject_id).decode("ascii")

    def verify_subject(self, token: str | None) -> str | None:
        """The subject id a token carries, or None when it is absent, malformed or forged."""
        if not token or len(token) > 200:
            return None
        try:
            sid = self._subject.unsign(token).decode("ascii")
        except (BadSignature, UnicodeError, ValueError):
            return None
        return sid if _SUBJECT_RE.fullmatch(sid) else None

    def sign_consent(self, version: str, granted: Sequence[str]) -> str:
        return self._consent.dumps({"v": version, "p": sorted(granted)})

    def read_consent(self, value: str | None) -> dict[str, Any] | None:
        if not value:
            return None
        try:
            data = self._consent.loads(value)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None
