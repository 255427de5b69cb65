"""What the gateway's policy says an APP may send, and cutting events down to the grants.

The client learns the field-to-purpose map from ``GET /v1/policy`` rather than carrying a
copy, so a new policy version needs no new SDK. Minimising here is a courtesy to the person
(fields of a refused purpose never leave the device); the gateway enforces it regardless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Policy:
    version: str
    optional: frozenset[str]  # purposes a person decides on
    events: dict[str, dict[str, str]]  # event type -> its own fields -> purpose
    any_event: dict[str, str]  # fields any event may carry (gps) -> purpose
    app_context: dict[str, str]  # fields a batch context may hold -> purpose
    document: dict[str, Any] = field(repr=False, default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)  # text field -> longest value

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Policy:
        optional = frozenset(n for n, p in doc["purposes"].items() if not p.get("always_on"))
        events = {name: dict(et["fields"]) for name, et in doc.get("event_types", {}).items()}
        any_event: dict[str, str] = {}
        app_context: dict[str, str] = {}
        limits: dict[str, int] = {}
        for purpose, p in doc["purposes"].items():
            for fname, f in p.get("fields", {}).items():
                if isinstance(f.get("max_length"), int):
                    limits[fname] = f["max_length"]
                if "*" not in f.get("event_types", []):
                    continue
                if f.get("source") == "event":
                    any_event[fname] = purpose
                if f.get("app_context"):
                    app_context[fname] = purpose
        return cls(doc["version"], optional, events, any_event, app_context, dict(doc), limits)

    def minimise(
        self, type_: str, fields: Mapping[str, Any], granted: frozenset[str]
    ) -> tuple[dict[str, Any], list[str]]:
        """The fields of an event whose purpose is granted, and the names left out.

        Raises KeyError for an event type the policy does not know.
        """
        own = self.events[type_]
        kept: dict[str, Any] = {}
        left: list[str] = []
        for name, value in fields.items():
            if value is None:
                continue
            purpose = own.get(name) or self.any_event.get(name)
            if purpose is not None and purpose in granted:
                kept[name] = value
            else:
                left.append(name)
        return kept, left


@dataclass(frozen=True)
class ConsentState:
    """The subject's consent as the gateway last reported it."""

    granted: frozenset[str]
    policy_version: str | None = None
    needs_reconsent: tuple[str, ...] = ()

    @classmethod
    def from_answer(cls, state: Mapping[str, Any]) -> ConsentState:
        purposes = state.get("purposes", {})
        return cls(
            frozenset(n for n, p in purposes.items() if p.get("granted")),
            state.get("policy_version"),
            tuple(state.get("needs_reconsent", [])),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "purposes": {p: {"granted": True} for p in sorted(self.granted)},
            "policy_version": self.policy_version,
            "needs_reconsent": list(self.needs_reconsent),
        }

    def without(self, purposes: frozenset[str]) -> ConsentState:
        return ConsentState(self.granted - purposes, self.policy_version, self.needs_reconsent)


NOTHING = ConsentState(frozenset())
