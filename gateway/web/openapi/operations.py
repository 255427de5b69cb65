"""Every operation the gateway serves, by the Flask endpoint that serves it (and the pixel,
which is served in front of Flask): what it takes, who may call it, what it answers.

``document()`` (``__init__.py``) walks the application's own URL map and looks each route up
here, so a route added without its description fails the document's build (and the tests),
and a description left for a removed route fails too. The refusals each operation can give
are listed with their status; every one has the uniform ``Error`` body (docs/protocol.md).
"""

from __future__ import annotations

from typing import Any

from ...core.catalogue import Catalogue
from ...core.events import EVENT_ID_PATTERN
from ...core.schemas import SOURCES
from .schemas import SUBJECT_ID, ref

JSON = "application/json"

# Who calls: a subject (the browser's _vid cookie or the APP's X-Subject header), a server API
# key of a scope, the SMS provider's webhook secret, the dashboard's session cookie.
Security = list[dict[str, list[str]]]
# {}: without a subject the operation answers as such (nothing held, nothing stored)
SUBJECT: Security = [{"subjectHeader": []}, {"subjectCookie": []}, {}]


def scope(name: str) -> Security:
    return [{"serverKey": [name]}]


DASHBOARD: Security = [{"dashboardSession": []}]
ERRORS = {
    400: "the request is malformed or invalid (fields names what)",
    401: "no valid credentials for this operation",
    403: "refused: another site's request, a missing CSRF token, or not granted",
    404: "no such thing",
    409: "a conflict that a retry may resolve (Retry-After)",
    413: "the body is too large",
    415: "the body is not JSON (or text/plain holding JSON) in UTF-8",
    429: "a rate limit or the privacy budget is spent (Retry-After)",
    503: "the store is unavailable: nothing was stored (Retry-After)",
}
BODY_ERRORS = (400, 413, 415)


def param(name: str, where: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema}


LIMIT = param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000})
CURSOR = param("cursor", "query", {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)*$"})
SINCE = param(
    "since",
    "query",
    {
        "anyOf": [
            {"type": "string", "pattern": "^[0-9]{1,16}$"},
            {"type": "string", "format": "date-time"},
        ],
        "description": "ms since 1970, or an ISO 8601 time with its offset",
    },
)
CHANNEL = param("channel", "query", {"type": "string", "enum": ["email", "sms"]}, required=True)
SID = param("sid", "path", SUBJECT_ID, required=True)
# the platform's account name; a path segment that is empty, . or .., a control character or
# U+FFFD is refused (a client or server would rewrite the path)
ACCOUNT = param(
    "account", "path", {"type": "string", "pattern": "^[A-Za-z0-9_@+-]{1,200}$"}, required=True
)


def op(
    summary: str,
    tag: str,
    ok: tuple[int, Any],
    *,
    errors: tuple[int, ...] = (),
    security: list[dict[str, list[str]]] | None = None,
    body: str | None = None,
    body_required: bool = True,
    params: tuple[dict[str, Any], ...] = (),
    description: str | None = None,
) -> dict[str, Any]:
    """One operation. ``ok``: (status, a component name, or a content mapping, or None for
    no body). Every operation may meet a store outage (503)."""
    status, answer = ok
    if answer is None:
        success: dict[str, Any] = {"description": "done"}
    elif isinstance(answer, str):
        success = {"description": "done", "content": {JSON: {"schema": ref(answer)}}}
    else:
        success = {"description": "done", "content": answer}
    responses: dict[str, Any] = {str(status): success}
    codes = set(errors) | {503} | (set(BODY_ERRORS) if body else set())
    for code in sorted(codes):
        responses[str(code)] = {
            "description": ERRORS[code],
            "content": {JSON: {"schema": ref(f"Error{code}")}},
        }
    out: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        out["description"] = description
    if security is not None:
        out["security"] = security
    if params:
        out["parameters"] = list(params)
    if body:
        out["requestBody"] = {"required": body_required, "content": {JSON: {"schema": ref(body)}}}
    return out


GIF = {"image/gif": {"schema": {"type": "string", "format": "binary"}}}
HTML = {"text/html": {"schema": {"type": "string"}}}
JS = {"application/javascript": {"schema": {"type": "string"}}}

OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    # -------------------------------------------------------------- consent
    "consent.policy": {
        "get": op(
            "The policy as JSON: purposes, fields, traits, versions", "consent", (200, "Policy")
        )
    },
    "consent.get_consent": {
        "get": op(
            "The caller's consent state",
            "consent",
            (200, "ConsentState"),
            errors=(401,),
            security=SUBJECT,
        )
    },
    "consent.post_consent": {
        "post": op(
            "Record decisions on purposes; answers the state and a signed receipt",
            "consent",
            (201, "ConsentAnswer"),
            errors=(401, 403, 409, 429),
            security=SUBJECT,
            body="ConsentRequest",
        )
    },
    "consent.delete_consent": {
        "delete": op(
            "Withdraw every purpose but necessary",
            "consent",
            (200, "ConsentAnswer"),
            errors=(400, 401, 403, 409, 429),
            security=SUBJECT,
            params=(param("source", "query", {"type": "string", "enum": list(SOURCES)}),),
        )
    },
    "proofs.history": {
        "get": op(
            "The caller's ledger, a page at a time, with the chain's check",
            "consent",
            (200, "History"),
            errors=(400, 401),
            security=SUBJECT,
            params=(LIMIT, CURSOR),
        )
    },
    "proofs.verify": {
        "post": op(
            "Check a receipt: signature, hash, on the ledger, chain intact",
            "consent",
            (200, "Verification"),
            body="ReceiptToVerify",
        )
    },
    "proofs.jwks": {
        "get": op("The receipts' public keys (JWK Set)", "consent", (200, "Jwks")),
    },
    "optout.post_optout": {
        "post": op(
            "Refuse advertising in this browser (a standing refusal, as GPC)",
            "consent",
            (200, {JSON: {"schema": ref("OptOut")}, **HTML}),
            errors=(401, 403, 409),
            security=SUBJECT,
        )
    },
    # -------------------------------------------------------------- collection
    "collect.post_events": {
        "post": op(
            "Web events: each split by purpose, only consented parts stored",
            "collection",
            (202, "EventsAnswer"),
            errors=(401, 403, 409, 429),
            security=SUBJECT,
            body="EventsRequest",
        )
    },
    "batch.post_batch": {
        "post": op(
            "An APP batch of up to 500 events with a device context",
            "collection",
            (202, "BatchAnswer"),
            errors=(401, 403, 409, 429),
            security=SUBJECT,
            body="BatchRequest",
        )
    },
    "subjects.create_subject": {
        "post": op(
            "A subject token for an APP installation (X-Subject)",
            "collection",
            (201, "NewSubject"),
            errors=(403, 429),
        )
    },
    "mailing.email_open": {
        "get": op(
            "Email open beacon from a signed link (advertising, when granted)",
            "advertising",
            (200, GIF),
            params=(param("token", "path", {"type": "string"}, required=True),),
        )
    },
    "mailing.unsubscribe_page": {
        "get": op(
            "The unsubscribe page of a signed link or SMS code",
            "advertising",
            (200, HTML),
            errors=(404,),
            params=(param("token", "path", {"type": "string"}, required=True),),
        )
    },
    "mailing.unsubscribe": {
        "post": op(
            "Leave the channel (a form, or RFC 8058 one-click); scope=all leaves advertising",
            "advertising",
            (200, {**HTML, "text/plain": {"schema": {"type": "string"}}}),
            errors=(400, 404, 409, 413, 415),
            params=(param("token", "path", {"type": "string"}, required=True),),
        )
    },
    "sms.inbound": {
        "post": op(
            "The SMS provider's webhook: TD / 退订 replies leave SMS",
            "advertising",
            (200, "SmsReply"),
            errors=(400, 401, 404, 409, 413, 415),
            security=[{"webhookSecret": []}],
            body="SmsReplyRequest",
        )
    },
    # -------------------------------------------------------------- subject rights
    "access.subject": {
        "get": op(
            "Everything held about the caller, a page at a time",
            "subject rights",
            (200, "SubjectAnswer"),
            errors=(400, 401),
            security=SUBJECT,
            params=(LIMIT, CURSOR),
        )
    },
    "erasure.erase_own": {
        "delete": op(
            "Erase the caller",
            "subject rights",
            (200, "Erasure"),
            errors=(401, 403),
            security=SUBJECT,
        )
    },
    "erasure.erase_on_request": {
        "delete": op(
            "Erase a subject on a written request (staff)",
            "subject rights",
            (200, "Erasure"),
            errors=(400, 401),
            security=scope("erasure"),
            params=(SID,),
        )
    },
    # -------------------------------------------------------------- senders
    "senders.contact": {
        "get": op(
            "May this subject be contacted on this channel?",
            "senders",
            (200, "Contact"),
            errors=(400, 401),
            security=scope("senders"),
            params=(param("subject", "query", SUBJECT_ID, required=True), CHANNEL),
        )
    },
    "senders.suppressions": {
        "get": op(
            "Everyone suppressed on a channel since a time (NDJSON, oldest first)",
            "senders",
            (200, {"application/x-ndjson": {"schema": {"type": "string"}}}),
            errors=(400, 401),
            security=scope("senders"),
            params=(CHANNEL, SINCE, param("end", "query", {"type": "string", "enum": ["1"]})),
        )
    },
    "senders.links": {
        "post": op(
            "Unsubscribe links (and an email open pixel) for one message",
            "senders",
            (200, "Links"),
            errors=(401,),
            security=scope("senders"),
            body="LinksRequest",
        )
    },
    # -------------------------------------------------------------- saved login
    "logins.issue": {
        "post": op(
            "Issue a saved-login token (the subject granted saved_login)",
            "saved login",
            (201, "SavedLogin"),
            errors=(401, 403, 409),
            security=scope("saved_login"),
            body="SavedLoginRequest",
        )
    },
    "logins.resume": {
        "post": op(
            "Resume a saved login: a new token, the old one ends",
            "saved login",
            (200, "SavedLogin"),
            errors=(401, 409),
            security=scope("saved_login"),
            body="TokenRequest",
        )
    },
    "logins.revoke": {
        "delete": op(
            "Revoke by token, account or subject",
            "saved login",
            (200, "Revoked"),
            errors=(401,),
            security=scope("saved_login"),
            body="RevokeRequest",
        )
    },
    # -------------------------------------------------------------- accounts
    "accounts.link": {
        "post": op(
            "Link a subject to the account that logged in on it",
            "accounts",
            (200, "Link"),
            errors=(401, 409),
            security=scope("accounts"),
            body="LinkRequest",
            params=(ACCOUNT,),
        )
    },
    "accounts.unlink": {
        "delete": op(
            "Unlink a subject from an account",
            "accounts",
            (200, "Link"),
            errors=(400, 401, 409),
            security=scope("accounts"),
            params=(ACCOUNT, param("subject", "path", SUBJECT_ID, required=True)),
        )
    },
    "accounts.traits": {
        "put": op(
            "Set an account's coarse company traits (null removes one)",
            "accounts",
            (200, "AccountTraits"),
            errors=(401, 409),
            security=scope("accounts"),
            body="TraitsRequest",
            params=(ACCOUNT,),
        )
    },
    # -------------------------------------------------------------- audiences
    "audiences.estimate": {
        "post": op(
            "How many consented people match: noised, floored at k, budgeted, audited",
            "audiences",
            (200, "Estimate"),
            errors=(401, 404, 409, 429),
            security=scope("audiences"),
            body="EstimateRequest",
        )
    },
    "audiences.breakdown": {
        "post": op(
            "The same, by the values of one dimension",
            "audiences",
            (200, "Breakdown"),
            errors=(401, 404, 409, 429),
            security=scope("audiences"),
            body="BreakdownRequest",
        )
    },
    "audiences.queries": {
        "get": op(
            "The audit log of audience queries, oldest first",
            "audiences",
            (200, "AuditEntries"),
            errors=(400, 401, 404),
            security=scope("audiences_admin"),
            params=(SINCE, LIMIT),
        )
    },
    # -------------------------------------------------------------- exports abroad
    "exports.exports": {
        "get": op(
            "The audit log of pseudonymised exports abroad (gateway export), oldest first",
            "exports",
            (200, "ExportEntries"),
            errors=(400, 401),
            security=scope("exports_admin"),
            params=(SINCE, LIMIT),
        )
    },
    # -------------------------------------------------------------- the marketers' dashboard
    "marketers.page": {
        "get": op(
            "The marketers' dashboard page",
            "dashboard",
            (200, HTML),
            errors=(404,),
            params=(param("lang", "query", {"type": "string", "enum": ["zh", "en"]}),),
        )
    },
    "marketers.sign_in": {
        "post": op(
            "Exchange an audiences API key for a session cookie and a CSRF token",
            "dashboard",
            (200, "MarketerSession"),
            errors=(401, 403),
            body="SignIn",
        )
    },
    "marketers.current": {
        "get": op(
            "The standing session (its key's name and CSRF token)",
            "dashboard",
            (200, "MarketerSession"),
            errors=(401,),
            security=DASHBOARD,
        )
    },
    "marketers.sign_out": {
        "delete": op(
            "Sign out (X-CSRF-Token)",
            "dashboard",
            (204, None),
            errors=(401, 403),
            security=DASHBOARD,
        )
    },
    "marketers.dimensions": {
        "get": op(
            "The dimensions, their closed values and the floor",
            "dashboard",
            (200, "Dimensions"),
            errors=(401, 404),
            security=DASHBOARD,
        )
    },
    "marketers.account": {
        "get": op(
            "The session key's budget this month and its own latest queries",
            "dashboard",
            (200, "MarketerAccount"),
            errors=(401, 404),
            security=DASHBOARD,
        )
    },
    "marketers.estimate": {
        "post": op(
            "POST /v1/audiences/estimate for the session's key (X-CSRF-Token)",
            "dashboard",
            (200, "Estimate"),
            errors=(401, 403, 404, 409, 429),
            security=DASHBOARD,
            body="EstimateRequest",
        )
    },
    "marketers.breakdown": {
        "post": op(
            "POST /v1/audiences/breakdown for the session's key (X-CSRF-Token)",
            "dashboard",
            (200, "Breakdown"),
            errors=(401, 403, 404, 409, 429),
            security=DASHBOARD,
            body="BreakdownRequest",
        )
    },
    # -------------------------------------------------------------- operations, files
    "ops.healthz": {
        "get": op(
            "Health: the store, consent durability, erasure files", "operations", (200, "Health")
        )
    },
    "exposition": {
        "get": op(
            "Prometheus metrics (keep it off the public front)",
            "operations",
            (200, {"text/plain": {"schema": {"type": "string"}}}),
        )
    },
    "openapi.openapi_document": {
        "get": op("This document", "operations", (200, {JSON: {"schema": {"type": "object"}}}))
    },
    "openapi.reference": {
        "get": op(
            "This document as a page (development mode; else 404)",
            "operations",
            (200, HTML),
            errors=(404,),
        )
    },
    "assets.sdk_file": {
        "get": op(
            "The browser SDK's built files (fixed names short-cached, hashed names immutable)",
            "files",
            (200, {**JS, "text/css": {"schema": {"type": "string"}}}),
            errors=(404,),
            params=(param("name", "path", {"type": "string"}, required=True),),
        )
    },
    "assets.demo": {
        "get": op("The demo shop page", "files", (200, HTML), errors=(404,)),
    },
    "home.home": {
        "get": op(
            "The landing page (development mode; else 404)", "files", (200, HTML), errors=(404,)
        )
    },
    "demo.available": {
        "get": op(
            "Whether the demo's login backend runs (development mode)", "demo", (200, "DemoBackend")
        )
    },
    "demo.login": {
        "post": op(
            "The demo shop's login (development mode)",
            "demo",
            (200, "DemoLogin"),
            errors=(401, 403, 409),
            security=SUBJECT,
            body="DemoLoginRequest",
        )
    },
    "demo.logout": {
        "post": op(
            "The demo shop's logout (development mode)", "demo", (200, "Revoked"), errors=(403,)
        )
    },
}


# /healthz answers 503 with its own body (status "degraded") when the store stops answering,
# and the refusal of every endpoint when the store was away since the start (layout unchecked).
OPERATIONS["ops.healthz"]["get"]["responses"]["503"] = {
    "description": "degraded: the store does not answer",
    "content": {JSON: {"schema": {"oneOf": [ref("Health"), ref("Error503")]}}},
}
# Routes served only in development (--dev): described, but absent from a production map.
DEV_ONLY = frozenset({"demo.available", "demo.login", "demo.logout"})


def pixel(cat: Catalogue) -> dict[str, dict[str, Any]]:
    """The web beacon, served in front of Flask (gateway/web/beacon.py): its event types and
    fields are the catalogue's (``gps`` cannot be sent this way)."""
    get = op(
        "The web beacon: one event from the query string, always the 43-byte GIF",
        "collection",
        (200, GIF),
        security=SUBJECT,
        params=(
            param("type", "query", {"type": "string", "enum": sorted(cat.client_events)}),
            param("event_id", "query", {"type": "string", "pattern": EVENT_ID_PATTERN}),
            param("ts", "query", {"type": "string", "format": "date-time"}),
            *(
                param(name, "query", {"type": "string"})
                for name in sorted(
                    {f for et in cat.client_events.values() for f in et.fields} - {"gps"}
                )
            ),
        ),
        description="The event's fields are the query's parameters, with their wire names "
        "(the event type's own, as for POST /v1/events; gps cannot be sent this way; `_` is "
        "ignored, at most 64 parameters). Refusals are the GIF too, with the error code in "
        "X-Error-Code.",
    )
    said = {
        "X-Error-Code": {"description": "why nothing was stored", "schema": {"type": "string"}},
        "X-Reason": {"description": "why less was stored than sent", "schema": {"type": "string"}},
    }
    get["responses"]["200"]["headers"] = {"X-Reason": said["X-Reason"]}
    for status in ("400", "401", "403", "429", "503"):
        get["responses"][status] = {
            "description": "refused; the reason in X-Error-Code",
            "headers": {"X-Error-Code": said["X-Error-Code"]},
            "content": GIF,
        }
    return {"/p.gif": {"get": get}}
