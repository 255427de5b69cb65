"""Marshmallow schemas, generated from the catalogue.

One schema per event type, holding the type's own fields and the client-sent context fields
(``gps``); fields the gateway derives itself (IP, user agent, region) are never accepted from
a client. Unknown fields are refused by name, so nothing outside the catalogue is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .catalogue import Catalogue, Field

EVENT_ID = validate.Regexp(r"^[A-Za-z0-9_.:-]{8,64}$", error="must be 8-64 letters, digits or _.:-")
SOURCES = ("banner", "settings", "app", "api")


class GpsSchema(Schema):
    class Meta:
        unknown = RAISE

    lat = fields.Float(required=True, allow_nan=False, validate=validate.Range(-90, 90))
    lon = fields.Float(required=True, allow_nan=False, validate=validate.Range(-180, 180))
    accuracy = fields.Float(allow_nan=False, validate=validate.Range(0, 100_000))


def _field(f: Field) -> fields.Field:
    if f.type == "gps":
        return fields.Nested(GpsSchema)
    if f.type == "integer":
        return fields.Integer(strict=False, validate=validate.Range(f.min, f.max))
    if f.type == "number":
        return fields.Float(allow_nan=False, validate=validate.Range(f.min, f.max))
    if f.type == "boolean":
        return fields.Boolean()
    checks: list[Any] = [validate.Length(min=0, max=f.max_length or 256)]
    if f.choices:
        checks.append(validate.OneOf(f.choices))
    if f.type == "url":
        checks.append(validate.URL(schemes={"http", "https"}, require_tld=False))
    return fields.String(validate=checks)


class _EventBase(Schema):
    class Meta:
        unknown = RAISE

    event_id = fields.String(required=True, validate=EVENT_ID)
    type = fields.String(required=True)
    ts = fields.AwareDateTime(default_timezone=UTC)

    max_age = timedelta(days=7)
    max_skew = timedelta(hours=1)

    @validates_schema
    def _ts_in_range(self, data: dict[str, Any], **_: Any) -> None:
        ts = data.get("ts")
        if ts is None:
            return
        now = datetime.now(UTC)
        if ts < now - self.max_age or ts > now + self.max_skew:
            raise ValidationError("is too far from the gateway's clock", field_name="ts")


def event_schemas(cat: Catalogue, *, max_age_s: int, max_skew_s: int) -> dict[str, Schema]:
    """A schema instance per event type; built once per application."""
    client_context = {n: f for n, f in cat.context_fields.items() if f.source == "event"}
    out: dict[str, Schema] = {}
    for et in cat.events.values():
        declared = {n: _field(cat.fields[n]) for n in et.fields}
        declared |= {n: _field(f) for n, f in client_context.items()}
        cls = _EventBase.from_dict(declared, name=f"{et.name.title()}Event")
        cls.max_age = timedelta(seconds=max_age_s)
        cls.max_skew = timedelta(seconds=max_skew_s)
        out[et.name] = cls()
    return out


def consent_schema(cat: Catalogue) -> Schema:
    """The body of POST /v1/consent: a known policy version and decisions on known purposes."""
    versions = [v.version for v in cat.versions]

    class ConsentRequest(Schema):
        class Meta:
            unknown = RAISE

        policy_version = fields.String(
            required=True,
            validate=validate.OneOf(versions, error="is not a policy version: one of {choices}"),
        )
        purposes = fields.Dict(keys=fields.String(), values=fields.Boolean(), required=True)
        source = fields.String(load_default="api", validate=validate.OneOf(SOURCES))

        @validates_schema
        def _purposes_known(self, data: dict[str, Any], **_: Any) -> None:
            unknown = sorted(set(data.get("purposes", {})) - set(cat.purposes))
            if unknown:
                raise ValidationError(
                    f"unknown purposes: {', '.join(unknown)}", field_name="purposes"
                )
            for name, granted in data.get("purposes", {}).items():
                if cat.purposes[name].always_on and not granted:
                    raise ValidationError(f"{name} is always on and cannot be refused",
                                          field_name="purposes")

    return ConsentRequest()
