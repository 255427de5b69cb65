"""The OpenAPI document's components: the request bodies from the code's own validators, the
answers' shapes, and every enumeration from the catalogue.

* Consent bodies: the marshmallow schema the gateway validates them with (``core/schemas.py``),
  converted by apispec's ``MarshmallowPlugin``, with the catalogue's purposes as the only keys.
* Event bodies and APP batches: the msgspec types ``EventCodec`` generates from the catalogue
  and decodes with, converted by ``msgspec.json.schema_components``.
* Traits, audience dimensions, purposes, channels, windows: read from the catalogue here, so a
  new purpose or trait value is in the document the moment the gateway takes it.

Answers are built as dicts by the web layer, so their shapes are written here; the contract
fuzzing (tests/integration/test_contract.py) checks every answer the gateway gives against
them.
"""

from __future__ import annotations

from typing import Any

import msgspec
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from werkzeug.exceptions import default_exceptions

from ...core import errors
from ...core.catalogue import Catalogue
from ...core.events import EventCodec
from ...core.schemas import SOURCES

REF = "#/components/schemas/{name}"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with these members (``required`` all present); others may be added later."""
    out: dict[str, Any] = {"type": "object", "properties": {**required, **(optional or {})}}
    if required:
        out["required"] = sorted(required)
    return out


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
ANY_OBJ: dict[str, Any] = {"type": "object"}
SUBJECT_ID: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
# a subject's id, or its signed token (a _vid cookie's or X-Subject's value)
SUBJECT_OR_TOKEN: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9a-f]{32}(\\.[A-Za-z0-9_-]+)?$",
}


def marshmallow_components(cat: Catalogue, consent_schema: Any) -> dict[str, Any]:
    """The consent body as the marshmallow schema that validates it says, keyed by purpose."""
    spec = APISpec("gateway", "1", "3.1.0", plugins=[MarshmallowPlugin()])
    spec.components.schema("ConsentRequest", schema=consent_schema)
    components: dict[str, Any] = spec.to_dict()["components"]["schemas"]
    body = components["ConsentRequest"]
    body["properties"]["purposes"]["propertyNames"] = {"enum": sorted(cat.purposes)}
    body["properties"]["source"]["enum"] = list(SOURCES)
    return components


def msgspec_components(codec: EventCodec) -> dict[str, Any]:
    """Events and APP batches as the msgspec types that decode them."""
    (event, batch), components = msgspec.json.schema_components(
        [codec.union, codec.batch_type], ref_template=REF
    )
    components["Event"] = event
    components["EventsRequest"] = {
        "oneOf": [event, obj({"events": {"type": "array", "items": event, "minItems": 1}})],
        "description": 'one event, or {"events": [...]} with 1 to MAX_EVENTS_PER_REQUEST',
    }
    components["BatchRequest"] = batch
    return dict(components)


def catalogue_components(cat: Catalogue) -> dict[str, Any]:
    """Traits, audience filters and the consent state's purposes, from the catalogue."""
    purposes = sorted(cat.purposes)
    out: dict[str, Any] = {}
    traits = {
        name: nullable({"type": "string", "enum": [*t.values, *t.aliases]})
        for name, t in cat.traits.items()
    }
    out["TraitsRequest"] = {"type": "object", "properties": traits, "additionalProperties": False}
    out["Traits"] = {
        "type": "object",
        "properties": {
            n: {"type": "string", "enum": list(t.values)} for n, t in cat.traits.items()
        },
    }
    if cat.audiences is not None:
        dims: dict[str, Any] = {}
        for name, d in cat.audiences.dimensions.items():
            value: dict[str, Any] = (
                {"type": "string", "enum": [*d.trait.values, *d.trait.aliases]}
                if d.trait
                else {"type": "string", "minLength": 1, "maxLength": d.max_length}
            )
            dims[name] = {"anyOf": [value, {"type": "array", "items": value, "maxItems": 50}]}
        dims["active_within_days"] = {"type": "integer", "enum": list(cat.audiences.windows)}
        out["AudienceFilters"] = {
            "type": "object",
            "properties": dims,
            "additionalProperties": False,
            "description": "values of one dimension OR, dimensions AND",
        }
        out["EstimateRequest"] = {
            "type": "object",
            "properties": {"filters": ref("AudienceFilters")},
            "additionalProperties": False,
        }
        out["BreakdownRequest"] = {
            "type": "object",
            "properties": {
                "by": {"type": "string", "enum": sorted(cat.audiences.dimensions)},
                "filters": ref("AudienceFilters"),
            },
            "required": ["by"],
            "additionalProperties": False,
        }
    decision = obj(
        {"granted": BOOL},
        {"version": nullable(STR), "at": nullable(STR), "decided": BOOL, "stale": BOOL},
    )
    out["ConsentState"] = obj(
        {
            "policy_version": nullable(STR),
            "current_version": STR,
            "recorded": BOOL,
            "purposes": {
                "type": "object",
                "propertyNames": {"enum": purposes},
                "additionalProperties": decision,
            },
            "needs_reconsent": {"type": "array", "items": {"enum": purposes}},
        },
        {
            "channels": {
                "type": "object",
                "propertyNames": {"enum": sorted(cat.channels)},
                "additionalProperties": obj(
                    {"unsubscribed": BOOL, "at": nullable(STR), "may_contact": BOOL}
                ),
            },
            "gpc": BOOL,
            "optout": BOOL,
        },
    )
    return out


def answer_components() -> dict[str, Any]:
    """The answers' shapes (the web layer builds them as dicts)."""
    error = obj(
        {"error": obj({"code": STR, "message": STR}, {"fields": ANY_OBJ})},
    )
    receipt = obj(
        {
            "id": STR,
            "entry_id": STR,
            "subject": STR,
            "time": STR,
            "policy_version": STR,
            "purposes": {"type": "object", "additionalProperties": BOOL},
            "source": STR,
            "action": STR,
            "prev": STR,
            "hash": STR,
        },
        {"jws": STR},
    )
    chain = obj(
        {
            "intact": BOOL,
            "problems": {"type": "array", "items": STR},
            "checked": obj({"from": INT, "to": INT, "head": BOOL}),
        }
    )
    stored = {
        "accepted": INT,
        "stored": INT,
        "duplicates": INT,
        "stored_fields": {"type": "object", "additionalProperties": INT},
        "dropped_fields": {"type": "object", "additionalProperties": INT},
    }
    reason = {"reason": {"enum": ["no_subject", "not_consented", "partly_consented"]}}
    result = obj(
        {
            "event_id": nullable(STR),
            "status": {"enum": ["stored", "duplicate", "not_consented", "rejected"]},
        },
        {"purposes": {"type": "array", "items": STR}, "error": error["properties"]["error"]},
    )
    cell = obj(
        {
            "value": STR,
            "estimate": nullable(INT),
            "range": nullable({"type": "array", "items": INT, "minItems": 2, "maxItems": 2}),
            "below_threshold": BOOL,
        }
    )
    estimate = obj(
        {
            "estimate": nullable(INT),
            "range": nullable({"type": "array", "items": INT, "minItems": 2, "maxItems": 2}),
            "below_threshold": BOOL,
            "epsilon_spent": NUM,
            "budget_left": NUM,
        }
    )
    breakdown = obj(
        {
            "by": STR,
            "cells": {"type": "array", "items": cell},
            "epsilon_spent": NUM,
            "budget_left": NUM,
        }
    )
    audit = obj(
        {"at": STR, "kind": {"enum": ["estimate", "breakdown"]}, "outcome": STR},
        {
            "key": STR,
            "key_digest": STR,
            "filters": {},
            "by": {},
            "answer": ANY_OBJ,
            "epsilon_spent": NUM,
        },
    )
    export = obj(
        {
            "at": STR,
            "id": STR,
            "outcome": {"enum": ["exported", "refused"]},
            "recipient": STR,
            "purpose": STR,
            "since": nullable(STR),
            "until": STR,
        },
        {
            "reason": {"enum": ["unknown_recipient", "unknown_purpose", "ceiling"]},
            "rows": INT,
            "people": INT,
            "new_people": INT,
            "year_people": INT,
            "year": INT,
            "ceiling": INT,
            "columns": {"type": "array", "items": STR},
            "free_text": BOOL,
            "file": STR,
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    )
    login = obj(
        {
            "token": STR,
            "account": STR,
            "subject": SUBJECT_ID,
            "expires_at_ms": INT,
            "max_age_s": INT,
            "set_cookie": STR,
        }
    )
    return {
        "Error": error,
        "Receipt": receipt,
        "ReceiptToVerify": receipt | {"required": sorted([*receipt["required"], "jws"])},
        "ConsentAnswer": obj(
            {"state": ref("ConsentState")},
            {
                "receipt": ref("Receipt"),
                "subject": STR,
                # per purpose withdrawn here: the stream entries of its data deleted with it
                "deleted": {"type": "object", "additionalProperties": INT},
            },
        ),
        "History": obj(
            {
                "entries": {"type": "array", "items": ANY_OBJ},
                "length": INT,
                "next_cursor": nullable(STR),
                "chain": chain,
            }
        ),
        "Verification": obj(
            {
                "valid": BOOL,
                "checks": obj(
                    {
                        "signature": BOOL,
                        "hash": BOOL,
                        "on_ledger": BOOL,
                        "chain_intact": nullable(BOOL),
                    }
                ),
                "problems": {"type": "array", "items": STR},
            }
        ),
        "Jwks": obj(
            {
                "keys": {
                    "type": "array",
                    "items": obj({"kty": STR, "crv": STR, "x": STR, "kid": STR}),
                }
            }
        ),
        "EventsAnswer": obj(stored, reason),
        "BatchAnswer": obj(
            {**stored, "rejected": INT, "results": {"type": "array", "items": result}}, reason
        ),
        "SubjectAnswer": obj(
            {
                "subject": nullable(SUBJECT_ID),
                "consent": ref("ConsentState"),
                "ledger": {"type": "array", "items": ANY_OBJ},
                "events": {"type": "object", "additionalProperties": {"type": "array"}},
                "held": ANY_OBJ,
                "next_cursor": nullable(STR),
            },
            {
                "ledger_length": INT,
                "ledger_intact": BOOL,
                "ledger_problems": {"type": "array", "items": STR},
            },
        ),
        "Erasure": obj(
            {"subject": nullable(SUBJECT_ID), "erased": BOOL},
            {
                "removed": obj({"event_entries": INT, "saved_logins": INT}),
                "receipt": obj(
                    {
                        "id": STR,
                        "action": {"const": "erasure"},
                        "subject": SUBJECT_ID,
                        "time": STR,
                        "source": {"enum": ["subject", "request"]},
                        "removed": ANY_OBJ,
                        "kept": ANY_OBJ,
                        "jws": STR,
                    }
                ),
            },
        ),
        "NewSubject": obj({"token": STR, "subject": SUBJECT_ID}),
        "OptOut": obj(
            {"optout": BOOL, "withdrawn": BOOL, "advertising": BOOL},
            {"deleted": {"type": "object", "additionalProperties": INT}},
        ),
        "Contact": obj(
            {
                "subject": SUBJECT_ID,
                "channel": STR,
                "may_contact": BOOL,
                "advertising": BOOL,
                "unsubscribed_at": nullable(STR),
            }
        ),
        "Links": obj(
            {"subject": SUBJECT_ID, "channel": STR, "unsubscribe": STR},
            {"open_pixel": STR, "headers": ANY_OBJ, "code": STR, "expires_in_s": INT},
        ),
        "SmsReply": obj(
            {"unsubscribed": BOOL},
            {"already": BOOL, "reason": {"enum": ["not_an_unsubscribe_reply", "unknown_sender"]}},
        ),
        "SavedLogin": login,
        "Revoked": obj({"revoked": INT}),
        "Link": obj({"account": STR, "subject": SUBJECT_ID, "linked": BOOL}, {"was_linked": BOOL}),
        "AccountTraits": obj({"account": STR, "traits": ref("Traits")}),
        "Estimate": estimate,
        "Breakdown": breakdown,
        "AuditEntries": obj({"queries": {"type": "array", "items": audit}}),
        "ExportEntries": obj({"exports": {"type": "array", "items": export}}),
        "Health": obj(
            {
                "status": {"enum": ["ok", "degraded"]},
                "storage": STR,
                "consent_durability": STR,
                "erasure_files": STR,
                "policy_version": STR,
            }
        ),
        "Policy": obj(
            {
                "version": STR,
                "purposes": ANY_OBJ,
                "event_types": ANY_OBJ,
                "history": {"type": "array", "items": ANY_OBJ},
            },
            {"traits": ANY_OBJ, "policy_url": nullable(STR)},
        ),
        "MarketerSession": obj({"key": obj({"name": STR}), "csrf": STR}),
        "SignIn": {
            "type": "object",
            "properties": {"key": {"type": "string", "minLength": 1}},
            "required": ["key"],
            "additionalProperties": False,
        },
        "Dimensions": obj(
            {
                "dimensions": {
                    "type": "object",
                    "additionalProperties": obj(
                        {"values": nullable({"type": "array", "items": STR})},
                        {"labels": nullable(ANY_OBJ)},
                    ),
                },
                "active_within_days": {"type": "array", "items": INT},
                "k": INT,
            }
        ),
        "MarketerAccount": obj(
            {
                "key": obj({"name": STR}),
                "month": STR,
                "budget": NUM,
                "budget_left": NUM,
                "recent": {"type": "array", "items": audit},
            }
        ),
        "DemoLogin": obj(
            {"account": STR, "subject": nullable(SUBJECT_ID), "saved_login": nullable(ANY_OBJ)}
        ),
        "DemoBackend": obj({"demo_backend": BOOL, "lifetime_s": INT}),
    }


def request_components() -> dict[str, Any]:
    """The server endpoints' small bodies (checked member by member in the web layer)."""

    def closed(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
        return obj(required, optional) | {"additionalProperties": False}

    text = {"type": "string", "minLength": 1, "maxLength": 200}
    return {
        "LinksRequest": closed(
            {"subject": SUBJECT_ID, "channel": {"enum": ["email", "sms"]}},
            {
                "campaign": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                "phone": {"type": "string", "pattern": "^(\\+|00)?[0-9]{6,20}$"},
            },
        ),
        "SavedLoginRequest": closed(
            {"account": text, "subject": SUBJECT_OR_TOKEN},
            {"lifetime_s": {"type": "integer", "minimum": 1}},
        ),
        "TokenRequest": closed({"token": text}),
        "RevokeRequest": {
            "oneOf": [
                closed({"token": text}),
                closed({"account": text}),
                closed({"subject": SUBJECT_OR_TOKEN}),
            ]
        },
        "LinkRequest": closed({"subject": SUBJECT_ID}),
        "SmsReplyRequest": closed({"from": text, "text": {"type": "string", "maxLength": 200}}),
        "DemoLoginRequest": closed({"account": text}, {"keep": BOOL}),
    }


def error_codes() -> dict[int, list[str]]:
    """Every code an answer of each status can carry: one per refusal class of
    ``core/errors.py`` (all the gateway raises), and werkzeug's HTTP errors as
    ``web/errors.py`` names them (``method_not_allowed``...)."""
    found: dict[int, set[str]] = {}

    def walk(cls: type[errors.GatewayError]) -> None:
        found.setdefault(cls.status, set()).add(cls.code)
        for sub in cls.__subclasses__():
            walk(sub)

    walk(errors.GatewayError)
    for status, exc in default_exceptions.items():
        found.setdefault(status, set()).add(str(exc().name).lower().replace(" ", "_"))
    return {status: sorted(codes) for status, codes in sorted(found.items())}


def error_components(statuses: set[int]) -> dict[str, Any]:
    """``Error<status>``: the uniform refusal, its ``code`` one of that status's codes."""
    codes = error_codes()
    return {
        f"Error{status}": {
            "allOf": [
                ref("Error"),
                obj({"error": obj({"code": {"type": "string", "enum": codes[status]}})}),
            ]
        }
        for status in sorted(statuses)
    }


def components(cat: Catalogue, codec: EventCodec, consent_schema: Any) -> dict[str, Any]:
    return {
        **request_components(),
        **marshmallow_components(cat, consent_schema),
        **msgspec_components(codec),
        **catalogue_components(cat),
        **answer_components(),
    }
