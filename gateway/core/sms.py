"""SMS unsubscribes: short codes that fit a message, and the numbers replies come from.

A signed token is too long for an SMS, so an SMS link carries a random code of 10 letters
and digits (59 bits) that the gateway maps to the subject for a configurable time
(``SMS_CODE_TTL_S``); an expired code is an unknown one. Replies arrive from the SMS
provider's webhook (``web/sms.py``); the gateway finds the subject by a keyed hash of the
sender's number (kept for the same time when a link was made for that number), never by the
number itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Sequence
from typing import Any

from .errors import ValidationFailed
from .ports import CodeStore

CODE_LENGTH = 10
CODE_RE = re.compile(r"[A-Za-z0-9]{10}")
_ALPHABET = string.ascii_letters + string.digits
# What people reply to unsubscribe (case and surrounding blanks ignored).
UNSUBSCRIBE_REPLIES = frozenset({"TD", "退订", "T", "STOP"})


def normalise_phone(phone: str, country: str = "86") -> str:
    """One spelling per number (E.164): ``+86 138-0013-8000``, ``008613800138000``,
    ``8613800138000`` and ``13800138000`` are all ``+8613800138000``; a number without an
    international prefix is taken as a national number of ``country``."""
    digits = re.sub(r"[\s()\-.]", "", phone or "")
    if not re.fullmatch(r"(\+|00)?[0-9]{6,20}", digits):
        raise ValidationFailed("not a phone number", fields={"phone": "6 to 20 digits"})
    if digits.startswith("+"):
        return digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    if digits.startswith(country) and len(digits) > 11:  # the country code without "+"
        return "+" + digits
    return "+" + country + digits.lstrip("0")


class SmsLinks:
    def __init__(
        self, store: CodeStore, keys: Sequence[str | bytes], ttl_s: int, country: str = "86"
    ) -> None:
        self.store = store
        # Numbers are found by an HMAC under each configured key, newest first, so that
        # replies to links made before a key rotation are still recognised.
        self._keys = [k.encode() if isinstance(k, str) else k for k in keys]
        self.ttl_s = ttl_s
        self.country = country

    def _phone_mac(self, phone: str, key: bytes) -> str:
        return hmac.new(key, b"gateway.sms-phone:" + phone.encode(), hashlib.sha256).hexdigest()

    def new_code(self, sid: str, phone: str | None = None) -> str:
        """A fresh code for ``sid`` (and the number its replies will come from)."""
        number = normalise_phone(phone, self.country) if phone is not None else None
        while True:
            code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))
            if self.store.claim_code(code, sid, self.ttl_s):
                break
        made = [("code", code)]
        if number is not None:
            mac = self._phone_mac(number, self._keys[0])
            self.store.remember_phone(mac, sid, self.ttl_s)
            made.append(("phone", mac))
        # The subject's own list of them, so that erasing the subject finds them.
        self.store.list_for(sid, made, self.ttl_s)
        return code

    def held(self, sid: str) -> dict[str, Any]:
        """What is kept about ``sid`` for SMS (policy clause 6): its live codes with their
        expiry, and whether a keyed hash of a number its replies come from is kept, until when.

        Read from the subject's own list and the keys it names only. A key named there may
        since have expired, or (a number later given for another subject, a code reissued
        after expiring) point at someone else: only keys still holding ``sid`` are shown.
        Times are the store's, in ms since the epoch. The number itself is never kept, so it
        cannot be shown.
        """
        codes: list[dict[str, Any]] = []
        phone_until: list[int] = []
        for kind, value, until in self.store.held(sid):
            if kind == "code":
                codes.append({"code": value, "expires_at_ms": until})
            elif kind == "phone":
                phone_until.append(until)
        codes.sort(key=lambda c: (c["expires_at_ms"], c["code"]))
        return {
            "codes": codes,
            "phone_hash_kept": bool(phone_until),
            "phone_hashes": len(phone_until),
            "phone_hash_expires_at_ms": max(phone_until, default=None),
        }

    def subject_of_code(self, code: str) -> str | None:
        if not CODE_RE.fullmatch(code):
            return None
        return self.store.subject_of_code(code)

    def subject_of_phone(self, phone: str) -> str | None:
        number = normalise_phone(phone, self.country)
        return self.store.subject_of_phone([self._phone_mac(number, key) for key in self._keys])
