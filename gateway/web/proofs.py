"""The proofs of consent: a person's ledger, receipts checked, and the keys that sign them.

* ``GET /v1/consent/history``: the caller's ledger as receipts, a page at a time, with the
  check of that page's hashes and links, its link to the entry before it, and the ledger's
  length and last hash against the head the consent state records.
* ``POST /v1/consent/verify``: a receipt as given is checked: its JWS signs exactly its
  fields, its fields hash to its hash, the ledger holds that entry unchanged at its place,
  and the whole chain is intact up to the recorded head.
* ``GET /.well-known/jwks.json``: the receipts' public keys (RFC 7517), retired ones too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..core.errors import ValidationFailed
from ..core.ledger import GENESIS, Head, check_chain
from ..core.tokens import is_subject_id
from .identity import caller
from .paging import cursor_of, cursor_text, limit_of
from .payload import read_json
from .services import Services, services

bp = Blueprint("proofs", __name__)

MAX_RECEIPT_BODY = 16 * 1024
RECEIPT_FIELDS = (
    "id",
    "entry_id",
    "subject",
    "time",
    "policy_version",
    "purposes",
    "source",
    "action",
    "prev",
    "hash",
    "jws",
)


def receipts_of(
    svc: Services, entries: Iterable[Mapping[str, str]], first: int
) -> list[dict[str, Any]]:
    """The receipts of ledger entries; an entry too damaged to make one is named instead."""
    out: list[dict[str, Any]] = []
    for seq, entry in enumerate(entries, start=first):
        try:
            out.append(svc.receipts.issue(entry))
        except (KeyError, ValueError, TypeError):
            out.append({"entry_id": str(seq), "damaged": True})
    return out


def ledger_page(svc: Services, sid: str, offset: int, limit: int) -> dict[str, Any]:
    """One page of a subject's ledger as receipts, checked (shared with GET /v1/subject)."""
    page = svc.store.ledger_page(sid, offset, limit)
    prev = GENESIS if page.before is None else page.before.get("hash", "")
    chain = check_chain(
        page.entries,
        first=page.first,
        prev=prev,
        head=Head(page.head_length, page.head_hash),
        length=page.length,
    )
    end = offset + len(page.entries)
    return {
        "entries": receipts_of(svc, page.entries, page.first),
        "length": page.length,
        "next_cursor": cursor_text(end) if end < page.length and page.entries else None,
        "chain": {
            "intact": chain.intact,
            "problems": chain.problems,
            "checked": {"from": page.first, "to": end, "head": True},
        },
    }


@bp.get("/v1/consent/history")
def history() -> Response:
    svc = services()
    limit = limit_of(request.args)
    (offset,) = cursor_of(request.args, 1)
    who = caller()
    if who.sid is None:
        empty = {"from": 1, "to": 0, "head": True}
        return jsonify(
            {
                "entries": [],
                "length": 0,
                "next_cursor": None,
                "chain": {"intact": True, "problems": [], "checked": empty},
            }
        )
    return jsonify(ledger_page(svc, who.sid, offset, limit))


@bp.post("/v1/consent/verify")
def verify() -> Response:
    """Check a receipt as given (see the module's docstring); ``valid`` when every check holds.

    The ledger is read only for a receipt whose signature is genuine: a forged one costs the
    store nothing. ``chain_intact`` is then null (not looked at). Otherwise it covers the
    entry's place (the entries on either side link to it and recompute) and the head (the
    ledger's length and last entry are those the consent state records): a few entries
    whatever the ledger's length. Every entry carries its own signature, and history checks
    the whole chain page by page."""
    svc = services()
    body = read_json(request, max_bytes=MAX_RECEIPT_BODY, max_depth=svc.config["MAX_JSON_DEPTH"])
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a receipt object")
    missing = [k for k in RECEIPT_FIELDS if k not in body]
    if missing:
        fields = dict.fromkeys(missing, "required")
        raise ValidationFailed("the receipt lacks fields", fields=fields)
    check = svc.receipts.check(body)
    entry = check.entry
    on_ledger = False
    intact: bool | None = None
    problems: list[str] = []
    seq = entry["seq"] if entry is not None else ""
    if (
        check.signature
        and entry is not None
        and is_subject_id(entry["subject"])
        and seq.isascii()
        and seq.isdigit()
        and 0 < int(seq) < 10**12
    ):
        at = svc.store.ledger_around(entry["subject"], int(seq))
        window = check_chain(
            at.entries,
            first=at.first,
            prev=at.entries[0].get("prev", "") if at.entries else GENESIS,
        )
        last = [at.before] if at.before is not None else []
        head = check_chain(
            last,
            first=at.length,
            prev=last[0].get("prev", "") if last else GENESIS,
            head=Head(at.head_length, at.head_hash),
            length=at.length,
        )
        problems = list(dict.fromkeys(window.problems + head.problems))
        intact = not problems
        stored = next((e for e in at.entries if e.get("seq") == seq), None)
        on_ledger = stored is not None and {k: stored.get(k) for k in entry} == entry
    return jsonify(
        {
            "valid": check.signature and check.hash and on_ledger and intact is True,
            "checks": {
                "signature": check.signature,
                "hash": check.hash,
                "on_ledger": on_ledger,
                "chain_intact": intact,
            },
            "problems": problems,
        }
    )


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    resp = jsonify(services().receipts.jwks())
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
