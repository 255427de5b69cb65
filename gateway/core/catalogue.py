"""The field catalogue: the policy as data, and everything derived from it.

``catalogue.toml`` declares versions, purposes, fields and event types once. This module
loads it, checks that it is coherent (a catalogue that names an unknown purpose must fail at
start-up, not at the first event), and answers the questions the rest of the gateway asks:
which purpose a field serves in an event type, in which version a purpose last changed, and
what ``GET /v1/policy`` shows.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import CatalogueError

NECESSARY = "necessary"
# The store records which purposes each event was stored under as a bit mask beside its id
# (the dedup score: time_ms * 64 + mask), so at most six optional purposes: a seventh needs
# another score layout, which a catalogue that asks for it is told at load time.
MAX_OPTIONAL_PURPOSES = 6
ASKED_AT = frozenset({"banner", "login"})  # where a purpose is offered to the person
# The behaviours the code attaches to a purpose, found through the catalogue by role (the code
# never names a purpose): "advertising" is refused by GPC and opt-outs and reaches people by
# channels each left on its own; withdrawing "saved_login" revokes every saved login; the
# browser SDK sends automatic page views and keeps its queue on the device only while
# "browsing" is granted (the SDKs read roles from GET /v1/policy).
ROLES = frozenset({"advertising", "saved_login", "browsing"})
# Where the gateway derives a request field from: the client's address, its user agent, the
# address located (GeoIP), an email link's signed token.
DERIVED_FROM = frozenset({"address", "user_agent", "geoip", "link"})
FIELD_TYPES = frozenset({"string", "url", "integer", "number", "boolean", "gps"})
SOURCES = frozenset({"event", "request", "device"})
# What ``gateway export`` may send to a recipient abroad (clause 3(2) item 4: information that
# leaves the country is technically processed first; core/export.py): "yes", "free_text"
# (only to a recipient whose settings allow free text) or "never" (whatever the purpose).
EXPORT_RULES = frozenset({"yes", "free_text", "never"})


@dataclass(frozen=True, slots=True)
class Version:
    version: str
    effective: str
    index: int
    summary: dict[str, str]


@dataclass(frozen=True, slots=True)
class Purpose:
    name: str
    clause: str
    retention_days: int
    title: dict[str, str]
    description: dict[str, str]
    since: str
    changed_in: tuple[str, ...] = ()
    always_on: bool = False
    sensitive: bool = False
    # "banner": the consent banner offers it; "login": it is asked where the person logs in
    # (saved login, clause 2(2) item 1: "by your choice"), never by the banner
    asked_at: str = "banner"
    role: str | None = None  # see ROLES
    channels: tuple[str, ...] = ()  # the advertising role's channels (email, sms)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str
    purpose: str
    clause: str
    source: str
    since: str
    description: str = ""
    sensitive: bool = False
    max_length: int | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    app_context: bool = False  # the APP may state it in a batch's context
    derived_from: str | None = None  # a request field's origin (see DERIVED_FROM)
    export: str = "yes"  # see EXPORT_RULES

    @property
    def text_limit(self) -> int | None:
        """The longest value a string or URL field takes (the schemas' default when unset)."""
        if self.type == "url":
            return self.max_length or 2048
        if self.type == "string" and not self.choices:
            return self.max_length or 256
        return None


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    # field name -> purpose it serves in this event type
    fields: dict[str, str]
    clause: str | None = None
    made_by: str = "client"  # or "gateway": never accepted from a client (an email open)


@dataclass(frozen=True)
class Trait:
    """A coarse company trait of an account (clause 2(1)): one of a fixed list of values."""

    name: str
    purpose: str
    clause: str
    values: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)  # another spelling -> its value
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # value -> {"zh", "en"}

    def normalise(self, value: object) -> str | None:
        """The catalogue's value ``value`` names (itself or by an alias), else None."""
        if not isinstance(value, str):
            return None
        value = value.strip()
        if value in self.values:
            return value
        return self.aliases.get(value)


@dataclass(frozen=True)
class Dimension:
    """A dimension of marketers' audience counts: its values come from event ``fields`` and/or
    an account ``trait`` (whose values, when there is one, are the only ones allowed)."""

    name: str
    fields: tuple[str, ...] = ()
    trait: Trait | None = None
    max_length: int = 32

    def normalise(self, value: object) -> str | None:
        """The value ``value`` names in this dimension, or None: a trait's value (or alias)
        when the dimension has a trait, else any short string without control characters."""
        if self.trait is not None:
            return self.trait.normalise(value)
        if not isinstance(value, str):
            return None
        value = value.strip()
        if not value or len(value) > self.max_length or not value.isprintable():
            return None
        return value


@dataclass(frozen=True)
class AudienceRules:
    """Who marketers' counts may include and from what (the catalogue's ``[audiences]``)."""

    consent: str  # the purpose that must stand now for a person to be counted
    activity: tuple[str, ...]  # the purposes whose events are read (and are activity)
    windows: tuple[int, ...]  # "active within N days"
    dimensions: dict[str, Dimension]

    def from_fields(self) -> dict[str, tuple[Dimension, ...]]:
        """Per event field, the dimensions it gives values to."""
        out: dict[str, list[Dimension]] = {}
        for d in self.dimensions.values():
            for f in d.fields:
                out.setdefault(f, []).append(d)
        return {f: tuple(ds) for f, ds in out.items()}


@dataclass(frozen=True)
class Catalogue:
    versions: tuple[Version, ...]
    purposes: dict[str, Purpose]
    fields: dict[str, Field]
    events: dict[str, EventType]
    traits: dict[str, Trait] = field(default_factory=dict)
    _version_index: dict[str, int] = field(default_factory=dict, repr=False)
    audiences: AudienceRules | None = None

    # ------------------------------------------------------------------ versions
    @property
    def current(self) -> Version:
        return self.versions[-1]

    def version_index(self, version: str) -> int | None:
        """Position of a version (0 = oldest), or None when the catalogue does not know it."""
        return self._version_index.get(version)

    @cached_property
    def changes(self) -> dict[str, frozenset[int]]:
        """Per purpose, the indexes of the versions that introduced it or changed what it covers."""
        out: dict[str, frozenset[int]] = {}
        for p in self.purposes.values():
            s = {self._version_index[p.since]} | {self._version_index[v] for v in p.changed_in}
            s |= {self._version_index[f.since] for f in self.fields.values() if f.purpose == p.name}
            for et in self.events.values():
                s |= {
                    self._version_index[self.fields[f].since]
                    for f, purpose in et.fields.items()
                    if purpose == p.name
                }
            out[p.name] = frozenset(s)
        return out

    @cached_property
    def last_change(self) -> dict[str, int]:
        """Per purpose, the index of the latest version that changed it: older consent is stale."""
        return {name: max(idx) for name, idx in self.changes.items()}

    def changed_by(self, version: str) -> list[str]:
        """The purposes whose definition the given version changed (or introduced)."""
        i = self._version_index[version]
        return [name for name, idx in self.changes.items() if i in idx]

    # ------------------------------------------------------------------ purposes
    def role(self, role: str) -> str | None:
        """The purpose that has ``role`` (see ROLES), if the catalogue gives it to one."""
        return next((p.name for p in self.purposes.values() if p.role == role), None)

    @cached_property
    def advertising(self) -> str | None:
        return self.role("advertising")

    @cached_property
    def saved_login(self) -> str | None:
        return self.role("saved_login")

    @cached_property
    def channels(self) -> tuple[str, ...]:
        """The channels advertising reaches people by, each left on its own."""
        return self.purposes[self.advertising].channels if self.advertising else ()

    def derived(self, origin: str) -> tuple[str, ...]:
        """The request fields the gateway derives from ``origin`` (see DERIVED_FROM)."""
        return tuple(f.name for f in self.fields.values() if f.derived_from == origin)

    @cached_property
    def client_events(self) -> dict[str, EventType]:
        """The event types clients may send (not those the gateway makes itself)."""
        return {n: e for n, e in self.events.items() if e.made_by == "client"}

    @cached_property
    def optional_purposes(self) -> tuple[str, ...]:
        """Purposes a person decides on: every purpose but the always-on ones."""
        return tuple(n for n, p in self.purposes.items() if not p.always_on)

    @cached_property
    def context_fields(self) -> dict[str, Field]:
        """Fields any event may carry: derived from the request, or client fields of no type."""
        typed = {f for et in self.events.values() for f in et.fields}
        return {n: f for n, f in self.fields.items() if n not in typed}

    @cached_property
    def app_context_fields(self) -> dict[str, Field]:
        """What an APP's batch ``context`` may hold: its device, in its own words."""
        return {n: f for n, f in self.context_fields.items() if f.app_context}

    def fields_serving(self, purpose: str) -> tuple[Field, ...]:
        """The fields stored under ``purpose``, in catalogue order: those an event type puts
        there, and the context fields of the purpose (as the policy document lists them)."""
        typed = {f for et in self.events.values() for f, p in et.fields.items() if p == purpose}
        return tuple(
            f
            for f in self.fields.values()
            if f.name in typed or (f.name in self.context_fields and f.purpose == purpose)
        )

    def export_fields(self, purpose: str, *, free_text: bool) -> tuple[Field, ...]:
        """The fields of ``purpose`` an export may carry (``export``; free text only when the
        recipient takes it): never an address, a device's identity, a position."""
        allowed = {"yes", "free_text"} if free_text else {"yes"}
        return tuple(f for f in self.fields_serving(purpose) if f.export in allowed)

    def purpose_of(self, event_type: str, field_name: str) -> str:
        et = self.events[event_type]
        if field_name in et.fields:
            return et.fields[field_name]
        return self.fields[field_name].purpose

    # ------------------------------------------------------------------ the public document
    def policy_document(self) -> dict[str, Any]:
        """The body of ``GET /v1/policy``: what is collected, why, under which clause, how long."""
        cur = self.current
        purposes: dict[str, Any] = {}
        for p in self.purposes.values():
            fields = {}
            for f in self.fields.values():
                serves = {et.name for et in self.events.values() if et.fields.get(f.name) == p.name}
                if f.name in self.context_fields and f.purpose == p.name:
                    serves = {"*"}
                if not serves:
                    continue
                fields[f.name] = {
                    "type": f.type,
                    "clause": f.clause,
                    "clause_text": cite(f.clause),
                    "source": f.source,
                    "app_context": f.app_context,
                    **({"derived_from": f.derived_from} if f.derived_from else {}),
                    **({"max_length": f.text_limit} if f.text_limit else {}),
                    "sensitive": f.sensitive or p.sensitive,
                    "since": f.since,
                    "description": f.description,
                    "event_types": sorted(serves),
                    "retention_days": p.retention_days,
                    "export": f.export,
                }
            purposes[p.name] = {
                "title": p.title,
                "description": p.description,
                "clause": p.clause,
                "clause_text": cite(p.clause),
                "asked_at": p.asked_at,
                **({"role": p.role} if p.role else {}),
                **({"channels": list(p.channels)} if p.channels else {}),
                "retention_days": p.retention_days,
                "always_on": p.always_on,
                "sensitive": p.sensitive,
                "changed_in": self.versions[self.last_change[p.name]].version,
                "fields": fields,
            }
        return {
            "version": cur.version,
            "effective": cur.effective,
            "summary": cur.summary,
            "purposes": purposes,
            # What clients may send; the types the gateway makes itself (an email open, from
            # a signed link) apart, so that an SDK never offers them.
            "event_types": {
                et.name: {"fields": dict(et.fields), "clause": et.clause}
                for et in self.client_events.values()
            },
            "gateway_event_types": {
                et.name: {"fields": dict(et.fields), "clause": et.clause}
                for et in self.events.values()
                if et.made_by == "gateway"
            },
            "traits": {
                t.name: {
                    "values": list(t.values),
                    "purpose": t.purpose,
                    "clause": t.clause,
                    **({"labels": t.labels} if t.labels else {}),
                }
                for t in self.traits.values()
            },
            "history": [
                {
                    "version": v.version,
                    "effective": v.effective,
                    "summary": v.summary,
                    "changed": self.changed_by(v.version),
                }
                for v in reversed(self.versions)
            ],
        }


# ---------------------------------------------------------------------- clauses
_ZH_DIGITS = "零一二三四五六七八九十"
_CLAUSE_RE = re.compile(r"(?:(\d+)\((\d+)\)|(\d+))(?: (?:items?) (\d+)(?:-(\d+))?)?")
_NOTES_RE = re.compile(r"Notes? (\d+)(?:-(\d+))?")


def _zh_number(n: int) -> str:
    if n <= 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _ZH_DIGITS[tens]) + "十" + (_ZH_DIGITS[ones] if ones else "")


def cite(clause: str) -> dict[str, str]:
    """A catalogue clause (``2(2) items 2-4``, ``2(3), 3(2) item 1``, ``Notes 1-2``) as each
    language's reader finds it in the policy: the Chinese policy numbers its articles, their
    paragraphs and items as 第二条第（二）款第2–4项 and its notes as 注1–2. CatalogueError for
    a clause the catalogue cannot cite, so that a typo fails at start-up."""
    zh: list[str] = []
    en: list[str] = []
    for part in clause.split(", "):
        notes = _NOTES_RE.fullmatch(part)
        if notes:
            first, last = notes.group(1), notes.group(2)
            span = f"{first}–{last}" if last else first
            zh.append(f"注{span}")
            en.append(f"Note{'s' if last else ''} {span}")
            continue
        found = _CLAUSE_RE.fullmatch(part)
        if found is None:
            raise CatalogueError(f"clause {clause!r}: cannot cite {part!r}")
        article, paragraph, alone, first, last = found.groups()
        article = article or alone
        text = f"第{_zh_number(int(article))}条"
        cited = article
        if paragraph:
            text += f"第（{_zh_number(int(paragraph))}）款"
            cited += f"({paragraph})"
        if first:
            span = f"{first}–{last}" if last else first
            text += f"第{span}项"
            cited += f" item{'s' if last else ''} {span}"
        zh.append(text)
        en.append(cited)
    return {"zh": "、".join(zh), "en": ", ".join(en)}


# ---------------------------------------------------------------------- loading
def load(path: str | Path | None = None) -> Catalogue:
    """Load and check a catalogue; the packaged ``catalogue.toml`` by default."""
    if path is None:
        raw = resources.files("gateway.core").joinpath("catalogue.toml").read_text("utf-8")
    else:
        raw = Path(path).read_text("utf-8")
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as e:
        raise CatalogueError(f"catalogue is not valid TOML: {e}") from e
    return _build(data)


def _build(data: dict[str, Any]) -> Catalogue:
    raw_versions = data.get("versions") or []
    if not raw_versions:
        raise CatalogueError("catalogue declares no policy version")
    versions = tuple(
        Version(v["version"], v.get("effective", v["version"]), i, dict(v.get("summary", {})))
        for i, v in enumerate(raw_versions)
    )
    index = {v.version: v.index for v in versions}
    if len(index) != len(versions):
        raise CatalogueError("a policy version is declared twice")
    first = versions[0].version

    def known_version(v: str, where: str) -> str:
        if v not in index:
            raise CatalogueError(f"{where} names unknown policy version {v!r}")
        return v

    purposes: dict[str, Purpose] = {}
    for name, p in data.get("purposes", {}).items():
        purposes[name] = Purpose(
            name=name,
            clause=p["clause"],
            retention_days=int(p["retention_days"]),
            title=dict(p.get("title", {})),
            description=dict(p.get("description", {})),
            since=known_version(p.get("since", first), f"purpose {name}"),
            changed_in=tuple(known_version(v, f"purpose {name}") for v in p.get("changed_in", [])),
            always_on=bool(p.get("always_on", False)),
            sensitive=bool(p.get("sensitive", False)),
            asked_at=str(p.get("asked_at", "banner")),
            role=p.get("role"),
            channels=tuple(p.get("channels", ())),
        )
        if purposes[name].asked_at not in ASKED_AT:
            raise CatalogueError(f"purpose {name}: asked_at is one of {sorted(ASKED_AT)}")
        if purposes[name].role is not None and purposes[name].role not in ROLES:
            raise CatalogueError(f"purpose {name}: role is one of {sorted(ROLES)}")
        if purposes[name].channels and purposes[name].role != "advertising":
            raise CatalogueError(f"purpose {name}: only the advertising role has channels")
    roles = [p.role for p in purposes.values() if p.role]
    if len(roles) != len(set(roles)):
        raise CatalogueError("a role is given to more than one purpose")
    if NECESSARY not in purposes or not purposes[NECESSARY].always_on:
        raise CatalogueError("the 'necessary' purpose must exist and be always on")
    optional = [p for p in purposes.values() if not p.always_on]
    if len(optional) > MAX_OPTIONAL_PURPOSES:
        raise CatalogueError(
            f"{len(optional)} optional purposes: the store keeps which purposes an event was "
            f"stored under in a {MAX_OPTIONAL_PURPOSES}-bit mask (its dedup score), so at most "
            f"{MAX_OPTIONAL_PURPOSES}"
        )

    fields: dict[str, Field] = {}
    for name, f in data.get("fields", {}).items():
        if f.get("type") not in FIELD_TYPES:
            raise CatalogueError(f"field {name} has unknown type {f.get('type')!r}")
        if f.get("purpose") not in purposes:
            raise CatalogueError(f"field {name} names unknown purpose {f.get('purpose')!r}")
        if purposes[f["purpose"]].always_on:
            raise CatalogueError(f"field {name}: the always-on purpose stores no event fields")
        if f.get("source") not in SOURCES:
            raise CatalogueError(f"field {name} has unknown source {f.get('source')!r}")
        if f["source"] == "device" and f.get("app_context") is False:
            raise CatalogueError(f"field {name}: a device field is stated in the APP's context")
        choices = f.get("choices")
        fields[name] = Field(
            name=name,
            type=f["type"],
            purpose=f["purpose"],
            clause=f["clause"],
            source=f["source"],
            since=known_version(f.get("since", first), f"field {name}"),
            description=f.get("description", ""),
            sensitive=bool(f.get("sensitive", False)),
            max_length=f.get("max_length"),
            min=f.get("min"),
            max=f.get("max"),
            choices=tuple(choices) if choices else None,
            app_context=bool(f.get("app_context", f["source"] == "device")),
            derived_from=f.get("derived_from"),
            # what the device says of itself is never exported unless the catalogue says so
            export=str(f.get("export", "never" if f["source"] == "device" else "yes")),
        )
        _check_export(fields[name], purposes[f["purpose"]])
        derived = fields[name].derived_from
        if (derived is None) != (f["source"] != "request") or (
            derived is not None and derived not in DERIVED_FROM
        ):
            raise CatalogueError(
                f"field {name}: a request field says where it is derived from "
                f"(derived_from: one of {sorted(DERIVED_FROM)}), and only a request field does"
            )

    events: dict[str, EventType] = {}
    for name, e in data.get("events", {}).items():
        made_by = e.get("made_by", "client")
        if made_by not in ("client", "gateway"):
            raise CatalogueError(f"event type {name}: made_by is client or gateway")
        override = e.get("purpose")
        if override is not None and (override not in purposes or purposes[override].always_on):
            raise CatalogueError(f"event type {name} names unusable purpose {override!r}")
        mapping: dict[str, str] = {}
        for fname in e.get("fields", []):
            if fname not in fields:
                raise CatalogueError(f"event type {name} lists unknown field {fname!r}")
            if made_by == "client" and fields[fname].source != "event":
                raise CatalogueError(f"event type {name}: field {fname} is not sent by clients")
            mapping[fname] = override or fields[fname].purpose
        events[name] = EventType(name=name, fields=mapping, clause=e.get("clause"), made_by=made_by)
    if not events:
        raise CatalogueError("catalogue declares no event type")
    typed = {f for et in events.values() for f in et.fields}
    for name in typed:
        if fields[name].app_context:
            raise CatalogueError(f"field {name}: an event type's field cannot be APP context")

    traits: dict[str, Trait] = {}
    for name, t in data.get("traits", {}).items():
        purpose = t.get("purpose")
        if purpose not in purposes or purposes[purpose].always_on:
            raise CatalogueError(f"trait {name} names unusable purpose {purpose!r}")
        values = tuple(str(v) for v in t.get("values", ()))
        if not values or len(set(values)) != len(values):
            raise CatalogueError(f"trait {name}: a list of distinct values is required")
        aliases = {str(k): str(v) for k, v in t.get("aliases", {}).items()}
        if not set(aliases.values()) <= set(values) or set(aliases) & set(values):
            raise CatalogueError(f"trait {name}: an alias names one of its values, and is none")
        labels = {
            str(v): {str(lang): str(text) for lang, text in words.items()}
            for v, words in t.get("labels", {}).items()
        }
        if not set(labels) <= set(values) or any(set(w) != {"zh", "en"} for w in labels.values()):
            raise CatalogueError(f"trait {name}: labels name its values, each in zh and en")
        traits[name] = Trait(name, purpose, str(t["clause"]), values, aliases, labels)

    for thing, clause in [
        *((f"trait {t.name}", t.clause) for t in traits.values()),
        *((f"purpose {p.name}", p.clause) for p in purposes.values()),
        *((f"field {f.name}", f.clause) for f in fields.values()),
        *((f"event type {e.name}", e.clause) for e in events.values() if e.clause),
    ]:
        try:
            cite(clause)
        except CatalogueError as e:
            raise CatalogueError(f"{thing}: {e}") from None
    audiences = _audiences(data.get("audiences"), purposes, fields, traits)
    return Catalogue(versions, purposes, fields, events, traits, index, audiences)


def _check_export(f: Field, purpose: Purpose) -> None:
    """A field's export rule: one of EXPORT_RULES; "free_text" only for text; and "never",
    said in the catalogue itself, for sensitive information (PIPL art. 28; the 2024
    cross-border provisions exempt transfers of personal information without it only), a
    position and the client's address, whatever the purpose."""
    if f.export not in EXPORT_RULES:
        raise CatalogueError(f"field {f.name}: export is one of {sorted(EXPORT_RULES)}")
    if f.export == "free_text" and f.type not in ("string", "url"):
        raise CatalogueError(f"field {f.name}: only a string or URL field is free text")
    forbidden = f.sensitive or purpose.sensitive or f.type == "gps" or f.derived_from == "address"
    if forbidden and f.export != "never":
        raise CatalogueError(
            f"field {f.name}: sensitive information, a position or the client's address is "
            'never exported (export = "never")'
        )


def _audiences(
    raw: dict[str, Any] | None,
    purposes: dict[str, Purpose],
    fields: dict[str, Field],
    traits: dict[str, Trait],
) -> AudienceRules | None:
    """The ``[audiences]`` section, checked: purposes optional, fields and traits known, and
    every field served by one of the activity purposes (the only streams the index reads)."""
    if raw is None:
        return None
    consent = raw.get("consent")
    if consent not in purposes or purposes[consent].always_on:
        raise CatalogueError(f"audiences: consent names unusable purpose {consent!r}")
    activity = tuple(str(p) for p in raw.get("activity", ()))
    if not activity or any(p not in purposes or purposes[p].always_on for p in activity):
        raise CatalogueError("audiences: activity lists optional purposes, at least one")
    windows = tuple(int(w) for w in raw.get("windows", ()))
    if not windows or any(not 1 <= w <= 366 for w in windows):
        raise CatalogueError("audiences: windows are whole numbers of days from 1 to 366")
    dimensions: dict[str, Dimension] = {}
    for name, d in raw.get("dimensions", {}).items():
        names = tuple(str(f) for f in d.get("fields", ()))
        for f in names:
            if f not in fields or fields[f].purpose not in activity:
                raise CatalogueError(f"audiences: dimension {name} reads unusable field {f!r}")
        trait = d.get("trait")
        if trait is not None and trait not in traits:
            raise CatalogueError(f"audiences: dimension {name} names unknown trait {trait!r}")
        if not names and trait is None:
            raise CatalogueError(f"audiences: dimension {name} has neither fields nor a trait")
        longest = max((fields[f].max_length or 32 for f in names), default=32)
        length = int(d.get("max_length", longest))
        dimensions[name] = Dimension(name, names, traits.get(trait) if trait else None, length)
    if not dimensions:
        raise CatalogueError("audiences: no dimension")
    return AudienceRules(consent, activity, windows, dimensions)
