"""Marshmallow schemas for the low-volume request bodies, generated from the catalogue.

Consent bodies are validated here. Event bodies, which must sustain tens of thousands a
second, use msgspec types generated from the same catalogue (``events.py``).
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .catalogue import NECESSARY, Catalogue
from .errors import SeparateConsentRequired

SOURCES = ("banner", "settings", "app", "api", "login")
# Where the person is asked for a purpose (catalogue ``asked_at``) -> the sources that may
# grant it: a purpose asked at login is never granted by the banner or its settings dialog.
GRANTED_FROM = {"banner": frozenset(SOURCES), "login": frozenset({"login", "app", "api"})}


def require_separate(cat: Catalogue, purposes: dict[str, bool]) -> None:
    """Refuse a grant of a sensitive purpose made together with any other decision.

    PIPL art. 29 asks for a separate consent to sensitive personal information (precise
    location, clause 2(2) item 2): a request that grants it must decide that purpose alone
    (``necessary``, always on, may stand beside it). Refusing it with others is fine: "reject
    all" must stay one click.
    """
    others = sorted(p for p in purposes if p != NECESSARY)
    for name in others:
        if cat.purposes[name].sensitive and purposes[name] is True and len(others) > 1:
            raise SeparateConsentRequired(
                f"{name} is sensitive personal information: grant it in a request of its own",
                fields={
                    "purposes": {name: "grant it alone", "with": [p for p in others if p != name]}
                },
            )


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
            source = data.get("source", "api")
            for name, granted in data.get("purposes", {}).items():
                purpose = cat.purposes[name]
                if purpose.always_on and not granted:
                    raise ValidationError(
                        f"{name} is always on and cannot be refused", field_name="purposes"
                    )
                if granted and source not in GRANTED_FROM[purpose.asked_at]:
                    raise ValidationError(
                        f"{name} is asked when the person logs in (source 'login'), "
                        f"not granted from the {source}",
                        field_name="purposes",
                    )

    return ConsentRequest()
