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

import time
import tomllib
import uuid
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import msgspec
from flask import Blueprint, Response, render_template, request

from ..core.caller import Caller
from ..core.consent import honour_refusal, leave_channel
from ..core.errors import NavigationRefused, OverLimit, StaleConsent, StorageUnavailable
from ..core.links import MailTokens
from ..core.ports import ANY_HEAD
from ..core.sms import CODE_LENGTH
from .collect import GIF, NO_STORE
from .origins import is_page_load
from .services import Services, services

bp = Blueprint("mailing", __name__)

EMAIL = "email"  # the channels these links serve (the catalogue's advertising channels)
SMS = "sms"
OPEN = "email_open"  # the event type an open is stored as (made by the gateway)
ONE_CLICK = "One-Click"
MAX_FORM_BYTES = 4 * 1024
_encode = msgspec.json.Encoder().encode


def unsubscribe_headers(tokens: MailTokens, base_url: str, sid: str) -> dict[str, str]:
    """The ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` values of one recipient's email
    (RFC 2369, RFC 8058); ``base_url`` is the gateway's public address."""
    url = base_url.rstrip("/") + "/u/" + tokens.unsubscribe_token(sid, EMAIL)
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
    except StorageUnavailable as e:  # still the GIF: a mail client never shows a broken image
        resp.status_code, refused = e.status, e.code
    if refused is not None:
        resp.headers["X-Error-Code"] = refused
    return resp


def _record_open(svc: Services, sid: str, campaign: str) -> str | None:
    """Store one email open; None, or the code of why it was not stored."""
    kept: tuple[str, ...] | None = ()
    purpose = svc.catalogue.events[OPEN].fields["campaign"]
    for _ in range(3):
        current = svc.store.read_consent(sid)
        if EMAIL in current.left:
            return "unsubscribed"
        event_id = uuid.uuid4().hex
        part = {
            "event_id": event_id,
            "type": OPEN,
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "campaign": campaign,
        }
        try:
            # Stored only if the consent is still the one just read (no unsubscribe since):
            # the store's script checks the head and the advertising grant in one step.
            [kept] = svc.store.store_events(
                sid,
                [(event_id, [(purpose, _encode(part))])],
                svc.min_grant,
                int(time.time() * 1000),
                current.head or ANY_HEAD,
                minted_ids=True,
            )
            break
        except StaleConsent:
            continue
        except OverLimit:  # the subject's events bucket
            return "rate_limited"
    if kept:
        svc.metrics.count_collected({purpose: 1}, 0, {(purpose, "campaign"): 1}, {})
        return None
    svc.metrics.count_collected({}, 0, {}, {(purpose, "campaign"): 1})
    return "not_consented"


# ---------------------------------------------------------------------- unsubscribe
@cache
def texts() -> dict[str, Any]:
    """The pages' words (pages.toml), in Chinese and English."""
    return tomllib.loads(resources.files("gateway.web").joinpath("pages.toml").read_text("utf-8"))


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
        found = (sid, SMS) if sid else None
    return found


@bp.get("/u/<token>")
def unsubscribe_page(token: str) -> Response:
    svc = services()
    claim = link_claim(svc, token)
    if claim is None:
        return page("invalid_link", 404)
    sid, channel = claim
    left = channel in svc.store.read_consent(sid).left
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
