"""Email and SMS advertising: open beacons and unsubscribe links, one per recipient.

Clause 2(3) lets people unsubscribe from advertising by email or SMS after receiving it, and
the advertising purpose covers the open beacons of that mail. Links carry signed tokens
(itsdangerous, one salt per kind, so one kind can never pass as another) naming the subject
and the channel or campaign; the gateway keeps no list of them.

* ``GET /e/<token>.gif``: an email open, recorded under ``advertising`` only while it is
  granted on the ledger and email was not left (both checked in the same atomic step as the
  write: the store refuses it if the consent changed since it was read). A forged or
  altered token stores nothing and still answers the GIF, as does every refusal: a mail
  client never shows a broken image.
* ``GET /u/<token>``: a page (Chinese and English) with one button; ``POST /u/<token>``
  leaves the token's channel, or with ``scope=all`` all advertising. The RFC 8058 one-click
  form (body ``List-Unsubscribe=One-Click``, posted by mail providers) works without the
  page. Posting again changes nothing.
"""

from __future__ import annotations

import hashlib
import re
import time
import tomllib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import msgspec
from flask import Blueprint, Response, render_template, request
from itsdangerous import BadSignature, URLSafeSerializer

from .collect import GIF, NO_STORE
from .consent import ADVERTISING, CHANNELS, honour_refusal, leave_channel
from .cookies import is_subject_id
from .errors import StorageUnavailable, store_refused
from .identity import Caller
from .origins import NavigationRefused, is_page_load
from .services import Services, services
from .sms import CODE_LENGTH
from .store import ANY_HEAD, OverLimit, StaleConsent

bp = Blueprint("mailing", __name__)

CAMPAIGN_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
ONE_CLICK = "One-Click"
MAX_FORM_BYTES = 4 * 1024
_encode = msgspec.json.Encoder().encode


class MailTokens:
    """Signed link tokens: ``open`` (subject, campaign) and ``unsubscribe`` (subject, channel)."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        ordered = list(reversed(list(keys)))
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
        if not is_subject_id(sid) or channel not in CHANNELS:
            raise ValueError(f"a subject id and a channel of {CHANNELS}")
        return self._unsubscribe.dumps([sid, channel])

    def read_open(self, token: str) -> tuple[str, str] | None:
        pair = _load(self._open, token)
        if pair is None or not CAMPAIGN_RE.fullmatch(pair[1]):
            return None
        return pair

    def read_unsubscribe(self, token: str) -> tuple[str, str] | None:
        pair = _load(self._unsubscribe, token)
        return pair if pair is not None and pair[1] in CHANNELS else None


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


# ---------------------------------------------------------------------- open beacon
@bp.get("/e/<token>.gif")
def email_open(token: str) -> Response:
    svc = services()
    resp = Response(GIF, mimetype="image/gif")
    resp.headers["Cache-Control"] = NO_STORE
    if is_page_load(
        request.headers.get("Sec-Fetch-Mode"),
        request.headers.get("Sec-Fetch-Dest"),
        request.headers.get("Accept"),
    ):  # a link to the beacon, followed or made by another site, is no open
        resp.headers["X-Error-Code"] = NavigationRefused.code
        return resp
    claim = svc.mail.read_open(token)
    if claim is None:
        resp.headers["X-Error-Code"] = "invalid_token"
        return resp
    try:
        refused = _record_open(svc, *claim)
    except Exception as e:
        if not store_refused(e):
            raise
        resp.status_code, refused = StorageUnavailable.status, StorageUnavailable.code
    if refused is not None:
        resp.headers["X-Error-Code"] = refused
    return resp


def _record_open(svc: Services, sid: str, campaign: str) -> str | None:
    """Store one email open; None, or the code of why it was not stored."""
    kept: tuple[str, ...] | None = ()
    for _ in range(3):
        raw = svc.store.read_consent(sid)
        if "ch:email" in raw:
            return "unsubscribed"
        event_id = uuid.uuid4().hex
        part = {
            "event_id": event_id,
            "type": "email_open",
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "campaign": campaign,
        }
        try:
            # Stored only if the consent is still the one just read (no unsubscribe since):
            # the store's script checks the head and the advertising grant in one step.
            [kept] = svc.store.store_events(
                sid,
                [(event_id, [(ADVERTISING, _encode(part))])],
                svc.min_grant,
                int(time.time() * 1000),
                raw.get("head") or ANY_HEAD,
                minted_ids=True,
            )
            break
        except StaleConsent:
            continue
        except OverLimit:  # the subject's events bucket
            return "rate_limited"
    if kept:
        svc.metrics.count_collected({ADVERTISING: 1}, 0, {(ADVERTISING, "campaign"): 1}, {})
        return None
    svc.metrics.count_collected({}, 0, {}, {(ADVERTISING, "campaign"): 1})
    return "not_consented"


# ---------------------------------------------------------------------- unsubscribe
@cache
def texts() -> dict[str, Any]:
    """The pages' words (pages.toml), in Chinese and English."""
    return tomllib.loads(resources.files("gateway").joinpath("pages.toml").read_text("utf-8"))


def page(name: str, status: int = 200, channel: str | None = None, **extra: Any) -> Response:
    """One of the gateway's pages, its words from pages.toml."""
    words = texts()
    names = words["channel"][channel] if channel else {"zh": "", "en": ""}
    fields = {
        k: v.format(channel_zh=names["zh"], channel_en=names["en"]) for k, v in words[name].items()
    }
    defaults = {"form_action": None, "offer_all": False, "scope": None}
    body = render_template("page.html", **(defaults | fields | extra))
    resp = Response(body, status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"  # a link's token is in its URL
    return resp


def link_claim(svc: Services, token: str) -> tuple[str, str] | None:
    """The subject and channel of an unsubscribe link: a signed token, or an SMS code."""
    found = svc.mail.read_unsubscribe(token)
    if found is None and len(token) == CODE_LENGTH:
        sid = svc.sms.subject_of_code(token)
        found = (sid, "sms") if sid else None
    return found


@bp.get("/u/<token>")
def unsubscribe_page(token: str) -> Response:
    svc = services()
    claim = link_claim(svc, token)
    if claim is None:
        return page("invalid_link", 404)
    sid, channel = claim
    left = ("ch:" + channel) in svc.store.read_consent(sid)
    name = "unsubscribe_already" if left else "unsubscribe_ask"
    # Already left: the one button left to offer is leaving all advertising.
    return page(
        name,
        channel=channel,
        form_action=request.path,
        offer_all=not left,
        scope="all" if left else None,
    )


@bp.post("/u/<token>")
def unsubscribe(token: str) -> Response:
    svc = services()
    request.max_content_length = MAX_FORM_BYTES
    claim = link_claim(svc, token)
    if claim is None:
        return page("invalid_link", 404)
    sid, channel = claim
    one_click = request.form.get("List-Unsubscribe") == ONE_CLICK
    who = Caller(sid, "link")
    leave_channel(svc, who, channel, channel)
    everything = not one_click and request.form.get("scope") == "all"
    if everything:
        honour_refusal(svc, who, svc.store.read_consent(sid), channel)
    if one_click:
        resp = Response("unsubscribed\n", mimetype="text/plain")
        resp.headers["Cache-Control"] = "no-store"
        return resp
    return page("unsubscribed_all" if everything else "unsubscribed_channel", channel=channel)
