"""The consent API: ``GET``/``POST``/``DELETE /v1/consent`` and ``GET /v1/policy``.

The rules and the recording are ``core/consent.py``; here the requests are read and the
answers made, with the cookies (``_consent``) or header (``X-Consent``) that carry the hint.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError

from ..core.caller import Caller
from ..core.consent import (
    ConsentState,
    consent_hint,
    evaluate,
    honour_refusal,
    record,
    standing_refusal,
)
from ..core.errors import ValidationFailed
from ..core.records import EMPTY
from ..core.schemas import SOURCES, require_separate
from ..core.tokens import OPTOUT_COOKIE
from .identity import caller
from .payload import read_json
from .services import Services, services

bp = Blueprint("consent", __name__)

MAX_CONSENT_BODY = 8 * 1024
# The APP's counterpart of the _consent cookie: answers to X-Subject callers carry it, and a
# batch that sends it back saves the gateway reading the consent first.
CONSENT_HEADER = "X-Consent"


def _answer(
    svc: Services,
    who: Caller,
    state: ConsentState,
    receipt: dict[str, Any] | None,
    status: int = 200,
    *,
    deleted: dict[str, int] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "state": state.to_json(svc.catalogue)
        | {"gpc": gpc_on(request), "optout": refusal_of(svc, request) is not None}
    }
    if receipt is not None:
        body["receipt"] = receipt
        # what the withdrawal deleted: per purpose withdrawn, the stored entries of its data
        body["deleted"] = deleted or {}
    if who.via == "header":
        body["subject"] = svc.tokens.sign_subject(who.sid or "")
    resp = jsonify(body)
    resp.status_code = status
    if who.via == "cookie" and who.sid:
        svc.cookies.set_consent(resp, consent_hint(svc, state.granted, state.head))
    elif who.via == "header" and who.sid:
        resp.headers[CONSENT_HEADER] = consent_hint(svc, state.granted, state.head)
    return resp


@bp.get("/v1/policy")
def policy() -> Response:
    return Response(services().policy_json, mimetype="application/json")


def gpc_on(req: Any) -> bool:
    """The browser sends Global Privacy Control (``Sec-GPC: 1``)."""
    return bool(req.headers.get("Sec-GPC", "").strip() == "1")


def started_elsewhere(req: Any) -> bool:
    """The browser says another site started this request (``Sec-Fetch-Site: cross-site``)."""
    return bool(req.headers.get("Sec-Fetch-Site") == "cross-site")


def refusal_of(svc: Services, req: Any) -> str | None:
    return standing_refusal(svc.tokens, req.headers.get("Sec-GPC"), req.cookies.get(OPTOUT_COOKIE))


@bp.get("/v1/consent")
def get_consent() -> Response:
    svc = services()
    who = caller()
    current = svc.store.read_consent(who.sid) if who.sid else EMPTY
    refusal = refusal_of(svc, request)
    # A navigation started by another site writes nothing (the GPC withdrawal is recorded on
    # the visitor's next request from a page of the site itself).
    if refusal and not started_elsewhere(request) and honour_refusal(svc, who, current, refusal):
        current = svc.store.read_consent(who.sid or "")
    state = evaluate(svc.catalogue, current)
    resp = jsonify(
        state.to_json(svc.catalogue) | {"gpc": gpc_on(request), "optout": refusal is not None}
    )
    if who.via == "header" and who.sid:
        resp.headers[CONSENT_HEADER] = consent_hint(svc, state.granted, state.head)
    return resp


@bp.post("/v1/consent")
def post_consent() -> Response:
    svc = services()
    svc.origins.check_write(request)
    body = read_json(request, max_bytes=MAX_CONSENT_BODY, max_depth=svc.config["MAX_JSON_DEPTH"])
    try:
        data = svc.consent_schema.load(body)
    except ValidationError as e:
        raise ValidationFailed("invalid consent", fields=e.normalized_messages()) from e  # type: ignore[no-untyped-call]
    if not isinstance(body, dict):  # pragma: no cover - the schema refuses non-objects
        raise ValidationFailed("the body must be an object")
    require_separate(svc.catalogue, data["purposes"])
    who = caller()
    decisions = dict(data["purposes"])
    advertising = svc.catalogue.advertising
    if advertising and decisions.get(advertising) and refusal_of(svc, request):
        decisions[advertising] = False  # GPC or an opt-out: the person's standing refusal
    done = record(
        svc,
        who,
        decisions,
        data["policy_version"],
        data["source"],
        "consent",
        client_address=request.remote_addr or "",
    )
    return _answer(svc, who, done.state, done.receipt, 201, deleted=done.deleted)


@bp.delete("/v1/consent")
def delete_consent() -> Response:
    svc = services()
    svc.origins.check_write(request)
    who = caller()
    decisions = dict.fromkeys(svc.catalogue.optional_purposes, False)
    source = request.args.get("source", "api")
    if source not in SOURCES:
        raise ValidationFailed("unknown source", fields={"source": source})
    done = record(
        svc,
        who,
        decisions,
        svc.catalogue.current.version,
        source,
        "withdraw",
        client_address=request.remote_addr or "",
    )
    return _answer(svc, who, done.state, done.receipt, deleted=done.deleted)
