"""Consent: the rules that turn a subject's ledger state into what counts today, and the API.

Deny by default: a purpose counts only when granted under a policy version at least as new
as the purpose's last change (clauses 2(6) and 9). ``necessary`` is always on. Withdrawing is
one call, as giving is.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError

from .catalogue import NECESSARY, Catalogue
from .cookies import OPTOUT_COOKIE, Tokens
from .errors import LedgerBusy, StorageUnavailable, ValidationFailed
from .identity import Caller, caller
from .ledger import build_entry
from .payload import read_json
from .schemas import SOURCES, require_separate
from .services import Services, services
from .store import LedgerConflict, NotDurable

bp = Blueprint("consent", __name__)

MAX_CONSENT_BODY = 8 * 1024
WRITE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ConsentState:
    recorded: bool
    policy_version: str | None
    purposes: dict[str, dict[str, Any]]
    needs_reconsent: list[str]
    granted: frozenset[str]  # what counts today, necessary included
    head: str = ""  # the ledger head this state was read at
    channels: dict[str, dict[str, Any]] | None = None  # advertising channels (mailing.py)

    def to_json(self, cat: Catalogue) -> dict[str, Any]:
        return {
            "policy_version": self.policy_version,
            "current_version": cat.current.version,
            "recorded": self.recorded,
            "purposes": self.purposes,
            "needs_reconsent": self.needs_reconsent,
            "channels": self.channels or {},
        }


def granted_now(
    cat: Catalogue, raw: Mapping[str, str], min_grant: Mapping[str, int]
) -> frozenset[str]:
    """The optional purposes that count today; the hot path's cut of ``evaluate``."""
    return frozenset(
        p for p in cat.optional_purposes if int(raw.get("g:" + p) or 0) >= min_grant[p]
    )


def evaluate(cat: Catalogue, raw: Mapping[str, str]) -> ConsentState:
    recorded = "version" in raw  # a decision on record (leaving a channel alone is none)
    last_version = raw.get("version")
    last_idx = cat.version_index(last_version) if last_version else None
    purposes: dict[str, dict[str, Any]] = {
        NECESSARY: {"granted": True, "version": last_version, "at": raw.get("updated")}
    }
    needs: list[str] = []
    granted = {NECESSARY}
    for p in cat.optional_purposes:
        grant = int(raw.get("g:" + p) or 0)
        changed = cat.last_change[p]
        effective = grant >= changed + 1
        version = raw.get("v:" + p)
        decided_idx = cat.version_index(version) if version else last_idx
        stale = recorded and decided_idx is not None and decided_idx < changed
        purposes[p] = {
            "granted": effective,
            "version": version,
            "at": raw.get("t:" + p),
            "decided": version is not None,
        }
        if stale:
            purposes[p]["stale"] = True
            needs.append(p)
        if effective:
            granted.add(p)
    channels = {
        ch: {
            "unsubscribed": ("ch:" + ch) in raw,
            "at": raw.get("ch:" + ch),
            "may_contact": ADVERTISING in granted and ("ch:" + ch) not in raw,
        }
        for ch in CHANNELS
    }
    return ConsentState(
        recorded, last_version, purposes, needs, frozenset(granted), raw.get("head", ""), channels
    )


ADVERTISING = "advertising"
SAVED_LOGIN = "saved_login"
# Channels advertising reaches people by, each of which they can leave on its own (clause
# 2(3)): the state hash holds ``ch:<channel>`` = when they left it.
CHANNELS = ("email", "sms")
HINT_CHARS = 16  # of the ledger head, in the _consent cookie: 64 bits tell states apart
# The APP's counterpart of the _consent cookie: answers to X-Subject callers carry it, and a
# batch that sends it back saves the gateway reading the consent first.
CONSENT_HEADER = "X-Consent"


def consent_cookie(svc: Services, granted: Iterable[str], head: str) -> str:
    return svc.tokens.sign_consent(
        svc.catalogue.current.version, sorted(granted), head[:HINT_CHARS]
    )


def now_text() -> str:
    """Now, as the ledger and the consent state write times."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def record(
    svc: Services,
    who: Caller,
    decisions: Mapping[str, bool],
    version: str,
    source: str,
    action: str,
    state: Mapping[str, str] | None = None,
    suppress: Iterable[str] = (),
    decides: bool = True,
    client_address: str | None = None,
) -> tuple[ConsentState, dict[str, Any]]:
    """Append one ledger entry and apply it to the state; the new state and the receipt.

    ``state``: more fields for the state hash, written in the same atomic step (a channel
    left, for an unsubscribe). ``decides``: False for an entry that decides no purpose (an
    unsubscribe), which must not make the subject look as if it had answered the banner.
    ``client_address``: given for the consent API's own calls, which the rate limits cover
    (the subject's ledger bucket; the address's ledger bucket, and its new-subjects bucket
    for a first entry) unless the write withdraws something granted. Links, GPC and
    opt-outs are not limited: each changes a state once."""
    cat = svc.catalogue
    sid = who.ensure()
    vidx = cat.version_index(version)
    assert vidx is not None  # the schema admits known versions only
    decisions = {NECESSARY: True, **{p: g for p, g in decisions.items() if p != NECESSARY}}
    receipt_id = secrets.token_hex(16)
    paid = client_address is None  # the address's buckets, taken once
    for _ in range(WRITE_ATTEMPTS):
        raw = svc.store.read_consent(sid)
        held = granted_now(cat, raw, svc.min_grant)
        # Withdrawing must stay as easy as granting: a write that takes back something
        # granted is never refused by a limit (nor are links, GPC and opt-outs: no address).
        narrows = any(p in held for p, g in decisions.items() if g is False)
        limited = client_address is not None and not narrows
        if limited and not paid:
            svc.store.take_address(
                svc.addresses(client_address), new_subject="head" not in raw
            )
            paid = True
        # Refusing advertising puts the subject on every channel's suppression list (senders
        # that hold addresses from elsewhere learn of refusals made at the first consent
        # too); granting it takes them off the lists of the channels they did not leave.
        refused = decisions.get(ADVERTISING) is False
        channels = sorted(set(suppress) | (set(CHANNELS) if refused else set()))
        rejoined = [
            ch
            for ch in CHANNELS
            if decisions.get(ADVERTISING) is True and ch not in channels and "ch:" + ch not in raw
        ]
        when = now_text()
        entry = build_entry(
            seq=int(raw.get("n") or 0) + 1,
            receipt_id=receipt_id,
            subject=sid,
            time=when,
            policy_version=version,
            purposes=decisions,
            source=source,
            action=action,
            prev=raw.get("head", ""),
        )
        signed = {**entry, "sig": svc.receipts.sign(entry)}
        state_fields = {"updated": when, **(state or {})}
        if decides:
            state_fields["version"] = version
        for p, g in decisions.items():
            if p == NECESSARY:
                continue
            state_fields |= {
                "g:" + p: str(vidx + 1) if g else "0",
                "v:" + p: version,
                "t:" + p: when,
            }
        grants = any(
            int(state_fields.get("g:" + p) or raw.get("g:" + p) or 0) > 0
            for p in cat.optional_purposes
        )
        try:
            svc.store.append_consent(
                sid,
                expected_head=raw.get("head", ""),
                receipt_id=receipt_id,
                new_head=entry["hash"],
                entry=signed,
                state=state_fields,
                grants=grants,
                limited=limited,
                suppress=channels,
                unsuppress=rejoined,
            )
        except LedgerConflict:
            continue
        except NotDurable as e:
            raise StorageUnavailable(str(e)) from e
        break
    else:
        raise LedgerBusy("the ledger is busy with concurrent changes; nothing was recorded, retry")
    svc.metrics.consents.labels(action=action).inc()
    if decisions.get(SAVED_LOGIN) is False:  # withdrawn: every saved login ends now
        svc.logins.revoke_subject(sid)
    state = evaluate(cat, svc.store.read_consent(sid))
    return state, svc.receipts.issue(signed)


def _answer(
    svc: Services,
    who: Caller,
    state: ConsentState,
    receipt: dict[str, Any] | None,
    status: int = 200,
) -> Response:
    body: dict[str, Any] = {
        "state": state.to_json(svc.catalogue)
        | {"gpc": gpc_on(request), "optout": refusal_of(svc, request) is not None}
    }
    if receipt is not None:
        body["receipt"] = receipt
    if who.via == "header":
        body["subject"] = svc.tokens.sign_subject(who.sid or "")
    resp = jsonify(body)
    resp.status_code = status
    if who.via == "cookie" and who.sid:
        svc.cookies.set_consent(resp, consent_cookie(svc, state.granted, state.head))
    elif who.via == "header" and who.sid:
        resp.headers[CONSENT_HEADER] = consent_cookie(svc, state.granted, state.head)
    return resp


@bp.get("/v1/policy")
def policy() -> Response:
    return Response(services().policy_json, mimetype="application/json")


def gpc_on(req: Any) -> bool:
    """The browser sends Global Privacy Control (``Sec-GPC: 1``)."""
    return req.headers.get("Sec-GPC", "").strip() == "1"


def standing_refusal(tokens: Tokens, gpc_header: str | None, optout: str | None) -> str | None:
    """What refuses advertising on every request, whatever the ledger says: ``"gpc"`` for
    ``Sec-GPC: 1``, ``"optout"`` for a genuine ``_optout`` cookie, else None."""
    if (gpc_header or "").strip() == "1":
        return "gpc"
    return "optout" if tokens.verify_optout(optout) else None


def started_elsewhere(req: Any) -> bool:
    """The browser says another site started this request (``Sec-Fetch-Site: cross-site``)."""
    return bool(req.headers.get("Sec-Fetch-Site") == "cross-site")


def refusal_of(svc: Services, req: Any) -> str | None:
    return standing_refusal(svc.tokens, req.headers.get("Sec-GPC"), req.cookies.get(OPTOUT_COOKIE))


def honour_refusal(svc: Services, who: Caller, raw: Mapping[str, str], source: str) -> bool:
    """Withdraw advertising once, on the ledger with ``source`` (``gpc``, ``optout``...), if
    it is granted.

    Called for requests that carry a standing refusal; True when an entry was written. The
    entry keeps the version the subject last decided under, so no other purpose changes.
    """
    if who.sid is None or int(raw.get("g:" + ADVERTISING) or 0) == 0:
        return False
    version = raw.get("version") or svc.catalogue.current.version
    record(svc, who, {ADVERTISING: False}, version, source, "withdraw")
    return True


def leave_channel(svc: Services, who: Caller, channel: str, source: str) -> bool:
    """Unsubscribe the subject from advertising on one channel; False when already done.

    The ledger entry (action ``unsubscribe``, source the link or message it came from)
    changes no purpose: the person keeps advertising on other channels."""
    raw = svc.store.read_consent(who.ensure())
    if ("ch:" + channel) in raw:
        return False
    version = raw.get("version") or svc.catalogue.current.version
    when = {"ch:" + channel: now_text()}
    record(
        svc,
        who,
        {},
        version,
        source,
        f"unsubscribe:{channel}",
        state=when,
        suppress=[channel],
        decides=False,
    )
    return True


@bp.get("/v1/consent")
def get_consent() -> Response:
    svc = services()
    who = caller()
    raw = svc.store.read_consent(who.sid) if who.sid else {}
    refusal = refusal_of(svc, request)
    # A navigation started by another site writes nothing (the GPC withdrawal is recorded on
    # the visitor's next request from a page of the site itself).
    if refusal and not started_elsewhere(request) and honour_refusal(svc, who, raw, refusal):
        raw = svc.store.read_consent(who.sid or "")
    state = evaluate(svc.catalogue, raw)
    resp = jsonify(
        state.to_json(svc.catalogue) | {"gpc": gpc_on(request), "optout": refusal is not None}
    )
    if who.via == "header" and who.sid:
        resp.headers[CONSENT_HEADER] = consent_cookie(svc, state.granted, state.head)
    return resp


@bp.post("/v1/consent")
def post_consent() -> Response:
    svc = services()
    svc.origins.check_write(request)
    body = read_json(request, max_bytes=MAX_CONSENT_BODY, max_depth=svc.config["MAX_JSON_DEPTH"])
    try:
        data = svc.consent_schema.load(body)
    except ValidationError as e:
        raise ValidationFailed("invalid consent", fields=e.normalized_messages()) from e
    if not isinstance(body, dict):  # pragma: no cover - the schema refuses non-objects
        raise ValidationFailed("the body must be an object")
    require_separate(svc.catalogue, data["purposes"])
    who = caller()
    decisions = dict(data["purposes"])
    if decisions.get(ADVERTISING) and refusal_of(svc, request):
        decisions[ADVERTISING] = False  # GPC or an opt-out: the person's standing refusal
    state, receipt = record(
        svc,
        who,
        decisions,
        data["policy_version"],
        data["source"],
        "consent",
        client_address=request.remote_addr or "",
    )
    return _answer(svc, who, state, receipt, 201)


@bp.delete("/v1/consent")
def delete_consent() -> Response:
    svc = services()
    svc.origins.check_write(request)
    who = caller()
    decisions = dict.fromkeys(svc.catalogue.optional_purposes, False)
    source = request.args.get("source", "api")
    if source not in SOURCES:
        raise ValidationFailed("unknown source", fields={"source": source})
    state, receipt = record(
        svc,
        who,
        decisions,
        svc.catalogue.current.version,
        source,
        "withdraw",
        client_address=request.remote_addr or "",
    )
    return _answer(svc, who, state, receipt)
