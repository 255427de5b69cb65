"""Marshmallow schemas for the low-volume request bodies, generated from the catalogue.

Consent bodies are validated here. Event bodies, which must sustain tens of thousands a
second, use msgspec types generated from the same catalogue (``events.py``).
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .catalogue import Catalogue

SOURCES = ("banner", "settings", "app", "api")


class StrictBoolean(fields.Boolean):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


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
        purposes = fields.Dict(keys=fields.String(), values=StrictBoolean(), required=True)
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
                    raise ValidationError(
                        f"{name} is always on and cannot be refused", field_name="purposes"
                    )

    return ConsentRequest()
