"""Email links: the signed tokens of an email's open beacon and of its unsubscribe link.

Links carry signed tokens (itsdangerous, one salt per kind, so one kind can never pass as
another) naming the subject and the campaign or channel; the gateway keeps no list of them.
The pages and the beacon that read them are ``web/mailing.py``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from .tokens import is_subject_id, newest_last

CAMPAIGN_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class MailTokens:
    """Signed link tokens: ``open`` (subject, campaign) and ``unsubscribe`` (subject, channel)."""

    def __init__(self, keys: Sequence[str | bytes], channels: Sequence[str]) -> None:
        self.channels = tuple(channels)
        ordered = newest_last(keys)
        sha256 = {"digest_method": hashlib.sha256}
        self._open = URLSafeSerializer(ordered, salt="gateway.email-open", signer_kwargs=sha256)
        self._unsubscribe = URLSafeSerializer(
            ordered, salt="gateway.unsubscribe", signer_kwargs=sha256
        )

    def open_token(self, sid: str, campaign: str) -> str:
        if not is_subject_id(sid) or not CAMPAIGN_RE.fullmatch(campaign):
            raise ValueError("a subject id and a campaign of letters, digits and _.:- (≤ 64)")
        return self._open.dumps([sid, campaign])

    def unsubscribe_token(self, sid: str, channel: str) -> str:
        if not is_subject_id(sid) or channel not in self.channels:
            raise ValueError(f"a subject id and a channel of {self.channels}")
        return self._unsubscribe.dumps([sid, channel])

    def read_open(self, token: str) -> tuple[str, str] | None:
        pair = _load(self._open, token)
        if pair is None or not CAMPAIGN_RE.fullmatch(pair[1]):
            return None
        return pair

    def read_unsubscribe(self, token: str) -> tuple[str, str] | None:
        pair = _load(self._unsubscribe, token)
        return pair if pair is not None and pair[1] in self.channels else None


def _load(serializer: URLSafeSerializer, token: str) -> tuple[str, str] | None:
    if len(token) > 300:
        return None
    try:
        data: Any = serializer.loads(token)
    except (BadSignature, UnicodeError, ValueError):
        return None
    if (
        isinstance(data, list)
        and len(data) == 2
        and all(isinstance(x, str) for x in data)
        and is_subject_id(data[0])
    ):
        return data[0], data[1]
    return None


def unsubscribe_headers(tokens: MailTokens, base_url: str, sid: str) -> dict[str, str]:
    """The ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` values of one recipient's email
    (RFC 2369, RFC 8058); ``base_url`` is the gateway's public address."""
    url = base_url.rstrip("/") + "/u/" + tokens.unsubscribe_token(sid, "email")
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
