"""SMS unsubscribes: short links that fit a message, and replies such as ``TD`` or ``退订``.

A signed token is too long for an SMS, so an SMS link carries a random code of 10 letters
and digits (59 bits) that the gateway maps to the subject for a configurable time
(``SMS_CODE_TTL_S``); an expired code is an unknown one. Replies arrive from the SMS
provider's webhook, authenticated with a shared secret; the gateway finds the subject by a
keyed hash of the sender's number (kept for the same time when a link was made for that
number), never by the number itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Sequence
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request

from .consent import leave_channel
from .errors import GatewayError, NotFound, ValidationFailed
from .identity import Caller
from .services import services
from .store import subject_prefix

bp = Blueprint("sms", __name__)

CODE_LENGTH = 10
CODE_RE = re.compile(r"[A-Za-z0-9]{10}")
_ALPHABET = string.ascii_letters + string.digits
# What people reply to unsubscribe (case and surrounding blanks ignored).
UNSUBSCRIBE_REPLIES = frozenset({"TD", "退订", "T", "STOP"})
MAX_BODY = 4 * 1024


class InvalidWebhookSecret(GatewayError):
    status = 401
    code = "invalid_webhook_secret"


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


def subject_keys(sid: str) -> str:
    return subject_prefix(sid) + ":sms"


class SmsLinks:
    def __init__(
        self,
        client: redis.Redis,
        keys: Sequence[str | bytes],
        ttl_s: int,
        country: str = "86",
    ) -> None:
        self.r = client
        # Numbers are found by an HMAC under each configured key, newest first, so that
        # replies to links made before a key rotation are still recognised.
        self._keys = [k.encode() if isinstance(k, str) else k for k in keys]
        self.ttl_s = ttl_s
        self.country = country

    def _phone_key(self, phone: str, key: bytes) -> str:
        mac = hmac.new(key, b"gateway.sms-phone:" + phone.encode(), hashlib.sha256)
        return "sms:phone:" + mac.hexdigest()

    def new_code(self, sid: str, phone: str | None = None) -> str:
        """A fresh code for ``sid`` (and the number its replies will come from)."""
        number = normalise_phone(phone, self.country) if phone is not None else None
        while True:
            code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))
            if self.r.set("sms:code:" + code, sid, ex=self.ttl_s, nx=True):
                break
        made = ["sms:code:" + code]
        if number is not None:
            made.append(self._phone_key(number, self._keys[0]))
            self.r.set(made[-1], sid, ex=self.ttl_s)
        # The subject's own list of them, so that erasing the subject finds them.
        pipe = self.r.pipeline(transaction=False)
        pipe.sadd(subject_keys(sid), *made)
        pipe.expire(subject_keys(sid), self.ttl_s)
        pipe.execute()
        return code

    def erasable(self, sid: str) -> list[str]:
        """The subject's SMS keys (codes, number), and the set that lists them."""
        return [*self.r.smembers(subject_keys(sid)), subject_keys(sid)]

    def held(self, sid: str) -> dict[str, Any]:
        """What is kept about ``sid`` for SMS (policy clause 6): its live codes with their
        expiry, and whether a keyed hash of a number its replies come from is kept, until when.

        Read from the subject's own list and the keys it names only. A key named there may
        since have expired, or (a number later given for another subject, a code reissued
        after expiring) point at someone else: only keys still holding ``sid`` are shown.
        Times are the store's (``PEXPIRETIME``), in ms since the epoch. The number itself is
        never kept, so it cannot be shown.
        """
        names = sorted(self.r.smembers(subject_keys(sid)))
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.get(name)
            pipe.pexpiretime(name)
        answers = pipe.execute()
        codes: list[dict[str, Any]] = []
        phone_until: list[int] = []
        for i, name in enumerate(names):
            owner, until = answers[2 * i], answers[2 * i + 1]
            if owner != sid or until is None or until < 0:
                continue
            if name.startswith("sms:code:"):
                codes.append({"code": name[len("sms:code:") :], "expires_at_ms": int(until)})
            elif name.startswith("sms:phone:"):
                phone_until.append(int(until))
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
        return self.r.get("sms:code:" + code)

    def subject_of_phone(self, phone: str) -> str | None:
        number = normalise_phone(phone, self.country)
        for key in self._keys:
            sid = self.r.get(self._phone_key(number, key))
            if sid is not None:
                return sid
        return None


@bp.post("/v1/sms/inbound")
def inbound() -> Response:
    """The SMS provider posts a reply: ``from`` and ``text``, as JSON or a form."""
    svc = services()
    secret = svc.config.get("SMS_WEBHOOK_SECRET")
    if not secret:
        raise NotFound("no SMS webhook is configured (SMS_WEBHOOK_SECRET)")
    given = request.headers.get("X-Webhook-Secret", "")
    if not hmac.compare_digest(given.encode(), str(secret).encode()):
        raise InvalidWebhookSecret("the webhook secret is wrong")
    request.max_content_length = MAX_BODY
    data = request.get_json(silent=True) if request.is_json else request.form
    if not isinstance(data, dict) and not hasattr(data, "get"):
        raise ValidationFailed("the body must hold 'from' and 'text'")
    sender, text = data.get("from"), data.get("text")
    if not isinstance(sender, str) or not isinstance(text, str):
        raise ValidationFailed("the body must hold 'from' and 'text'", fields={"from": "required"})
    if text.strip().upper() not in UNSUBSCRIBE_REPLIES:
        return jsonify({"unsubscribed": False, "reason": "not_an_unsubscribe_reply"})
    sid = svc.sms.subject_of_phone(sender)
    if sid is None:
        return jsonify({"unsubscribed": False, "reason": "unknown_sender"})
    left = leave_channel(svc, Caller(sid, "link"), "sms", "sms")
    return jsonify({"unsubscribed": True, "already": not left})
