"""``POST /v1/sms/inbound``: the SMS provider's webhook, for replies such as ``TD`` or ``退订``.

Authenticated with a shared secret (``SMS_WEBHOOK_SECRET``); the sender's number is looked
up by its keyed hash (``core/sms.py``) and leaves SMS advertising for that subject.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, jsonify, request

from ..core.caller import Caller
from ..core.consent import leave_channel
from ..core.errors import InvalidWebhookSecret, NotFound, ValidationFailed
from ..core.sms import UNSUBSCRIBE_REPLIES
from .services import services

bp = Blueprint("sms", __name__)

MAX_BODY = 4 * 1024


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
    if not isinstance(data, dict):  # a form is a MultiDict, itself a dict
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
