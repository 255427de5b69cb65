"""Events: decoding and validating them, and splitting each by purpose.

Event types are msgspec structs generated from the catalogue: decoding and validating a
100-event body costs under 6 µs an event, against about 31 µs with equivalent marshmallow
schemas on this machine (bench/bench_decode.py), and the collection path must sustain tens
of thousands of events a second. Refusals still name the event, the field and the problem.
A body is valid as a whole or refused as a whole, so nothing of a bad request is stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Annotated, Any, Literal, NamedTuple, Union, cast

import msgspec
from msgspec.structs import astuple

from .catalogue import Catalogue, Field
from .errors import (
    GatewayError,
    InvalidEncoding,
    InvalidJSON,
    TooDeep,
    TooManyEvents,
    ValidationFailed,
)
from .jsonbody import depth_exceeds, parse_json
from .parts import Event
from .split import Plans, Splitter

# An event id, as the OpenAPI document states it (ECMA-262, where ``$`` ends the text) and as
# it is checked (Python, where ``$`` also matches before a final newline: an id ending in one
# would pass, and shift the ids after it where the store joins them with newlines).
EVENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{8,64}$"
EVENT_ID_CHECK = EVENT_ID_PATTERN.removesuffix("$") + r"\Z"


class Gps(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    accuracy: Annotated[float, msgspec.Meta(ge=0, le=100_000)] | None = None


def _annotation(f: Field) -> Any:
    if f.type == "gps":
        return Gps
    if f.type == "integer":
        return Annotated[int, msgspec.Meta(ge=f.min, le=f.max)]
    if f.type == "number":
        return Annotated[float, msgspec.Meta(ge=f.min, le=f.max)]
    if f.type == "boolean":
        return bool
    if f.choices:
        return Literal[f.choices]
    if f.type == "url":
        return Annotated[str, msgspec.Meta(max_length=f.text_limit, pattern=r"^https?://")]
    return Annotated[str, msgspec.Meta(max_length=f.text_limit)]


_encode_json = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event of a batch that was refused, and the id it was sent with (if usable)."""

    error: GatewayError
    event_id: str | None


Decoded = Event | Rejected


def _context_dict(context: Any) -> dict[str, Any]:
    if context is None:
        return {}
    return {
        n: v
        for n, v in zip(context.__struct_fields__, astuple(context), strict=True)
        if v is not None
    }


class _Clock(NamedTuple):
    """The gateway's time for one request, and the event times it accepts."""

    now: datetime
    earliest: datetime
    latest: datetime


_TS = attrgetter("ts")
_EVENT_ID = attrgetter("event_id")
_TAG = attrgetter("__struct_config__.tag")


def _out_of_window(where: str) -> ValidationFailed:
    return ValidationFailed(
        "event time is too far from the gateway's clock",
        fields={f"{where}.ts": "must be within the accepted window"},
    )


class _SentId(msgspec.Struct):
    event_id: Any = None


_sent_id = msgspec.json.Decoder(_SentId).decode


def sent_id(raw: bytes) -> str | None:
    """The id an unusable event was sent with, so that the APP can match the refusal."""
    try:
        eid = _sent_id(raw).event_id
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return eid if isinstance(eid, str) and 0 < len(eid) <= 64 else None


class EventCodec:
    """Decodes web events for one catalogue, and splits them into per-purpose parts."""

    def __init__(
        self,
        cat: Catalogue,
        *,
        max_events: int = 100,
        max_depth: int = 20,
        max_age_s: int = 7 * 86_400,
        max_skew_s: int = 3_600,
    ) -> None:
        self.cat = cat
        self.max_events = max_events
        self.max_depth = max_depth
        self.max_age = timedelta(seconds=max_age_s)
        self.max_skew = timedelta(seconds=max_skew_s)
        client_context = {n: f for n, f in cat.context_fields.items() if f.source == "event"}
        types = []
        # Only the types clients send: an ``email_open`` is made by the gateway from a signed
        # link, so a client posting one is refused as an unknown type like any other.
        for et in cat.client_events.values():
            declared = [(n, _annotation(cat.fields[n]) | None, None) for n in et.fields]
            declared += [(n, _annotation(f) | None, None) for n, f in client_context.items()]
            types.append(
                msgspec.defstruct(
                    f"{et.name}_event",
                    [
                        ("event_id", Annotated[str, msgspec.Meta(pattern=EVENT_ID_CHECK)]),
                        ("ts", Annotated[datetime, msgspec.Meta(tz=True)] | None, None),
                        *declared,
                    ],
                    tag_field="type",
                    tag=et.name,
                    forbid_unknown_fields=True,
                    kw_only=True,
                    omit_defaults=True,  # encoded whole into a part: unset fields left out
                )
            )
        # Types made at run time: Any to the type checker, checked by msgspec when decoding.
        self.union: Any = Union[tuple(types)]  # noqa: UP007 - a runtime union of generated types
        # msgspec.convert works out a union's validation on every call (13 us for this one),
        # a struct's once: the pixel's parameters go to their type's struct directly.
        self._by_type: dict[str, Any] = {str(t.__struct_config__.tag): t for t in types}
        self._plans = Plans()
        events_list: Any = list[self.union]  # type: ignore[name-defined]
        self._one: msgspec.json.Decoder[Any] = msgspec.json.Decoder(self.union)
        self._many: msgspec.json.Decoder[Any] = msgspec.json.Decoder(events_list)
        self._top = msgspec.json.Decoder(dict[str, msgspec.Raw])
        app_context = msgspec.defstruct(
            "app_context",
            [(n, _annotation(f) | None, None) for n, f in cat.app_context_fields.items()],
            forbid_unknown_fields=True,
            kw_only=True,
        )
        batch = msgspec.defstruct(
            "batch",
            [("events", list[msgspec.Raw]), ("context", app_context | None, None)],
            forbid_unknown_fields=True,
            kw_only=True,
        )
        self._batch: msgspec.json.Decoder[Any] = msgspec.json.Decoder(batch)
        valid_batch = msgspec.defstruct(
            "valid_batch",
            [("events", events_list), ("context", app_context | None, None)],
            forbid_unknown_fields=True,
            kw_only=True,
        )
        self._valid_batch: msgspec.json.Decoder[Any] = msgspec.json.Decoder(valid_batch)
        self.batch_type: Any = valid_batch  # the batch body's type (the OpenAPI document)
        # per event type: the fields its struct holds besides the envelope
        self.struct_fields: dict[str, tuple[str, ...]] = {
            et: (*cat.events[et].fields, *client_context) for et in cat.client_events
        }
        self.context_purposes = {n: f.purpose for n, f in cat.context_fields.items()}
        # per event type: field -> purpose, for the type's own and every context field
        self.purposes: dict[str, dict[str, str]] = {
            et: {f: cat.purpose_of(et, f) for f in (*cat.events[et].fields, *cat.context_fields)}
            for et in cat.events
        }

    # ------------------------------------------------------------------ decoding
    def decode_body(self, raw: bytes) -> list[Event]:
        """A JSON body holding one event or ``{"events": [...]}``."""
        prefix = "$"
        try:
            top = self._top.decode(raw)
            if "events" in top:
                if set(top) != {"events"}:
                    extra = ", ".join(sorted(set(top) - {"events"}))
                    raise ValidationFailed(f"unknown top-level keys: {extra}")
                prefix = "$.events"
                structs = self._many.decode(top["events"])
            else:
                structs = [self._one.decode(raw)]
                prefix = "$"
        except msgspec.ValidationError as e:  # a subclass of DecodeError: first
            raise self._explain_invalid(raw, e, prefix) from e
        except msgspec.DecodeError as e:
            raise self._explain_decode(raw, e) from e
        except UnicodeDecodeError as e:  # msgspec's own, for bad bytes inside strings
            raise InvalidEncoding(f"the body is not valid UTF-8 (byte {e.start})") from e
        except RecursionError as e:
            raise TooDeep(f"JSON nested deeper than {self.max_depth} levels") from e
        if len(structs) > self.max_events:
            raise TooManyEvents(f"at most {self.max_events} events per request, got {len(structs)}")
        if not structs:
            raise ValidationFailed("the events list is empty")
        return self._events(structs, prefix)

    def decode_batch(self, raw: bytes, max_events: int) -> tuple[dict[str, Any], list[Decoded]]:
        """An APP batch: its device context, and each event decoded on its own.

        The body's shape and its context must be right (the context applies to every event);
        an event that is not is reported in its place and the others go on.
        """
        try:
            # Nearly every batch is valid throughout: decoded in one pass. Only a batch with a
            # bad event (or a bad body) is taken apart event by event, to say which.
            fast = self._valid_batch.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            fast = None
        if fast is not None and 0 < len(fast.events) <= max_events:
            try:
                decoded = cast("list[Decoded]", self._events(fast.events, "$.events"))
            except ValidationFailed:  # an event time out of bounds: judged one by one below
                pass
            else:
                return _context_dict(fast.context), decoded
        try:
            top = self._batch.decode(raw)
        except msgspec.ValidationError as e:
            raise self._explain_invalid(raw, e, "$") from e
        except msgspec.DecodeError as e:
            raise self._explain_decode(raw, e) from e
        except UnicodeDecodeError as e:
            raise InvalidEncoding(f"the body is not valid UTF-8 (byte {e.start})") from e
        except RecursionError as e:
            raise TooDeep(f"JSON nested deeper than {self.max_depth} levels") from e
        if len(top.events) > max_events:
            raise TooManyEvents(f"at most {max_events} events per batch, got {len(top.events)}")
        if not top.events:
            raise ValidationFailed("the events list is empty")
        clock = self._clock()
        return _context_dict(top.context), [
            self._decode_one(r, i, clock) for i, r in enumerate(top.events)
        ]

    def _decode_one(self, raw: msgspec.Raw, i: int, clock: _Clock) -> Decoded:
        where = f"$.events[{i}]"
        error: GatewayError
        try:
            return self._event(self._one.decode(raw), where, clock)
        except msgspec.ValidationError as e:
            error = self._explain_invalid(bytes(raw), e, where)
        except UnicodeDecodeError as e:
            error = InvalidEncoding(f"the event is not valid UTF-8 (byte {e.start})")
        except msgspec.DecodeError as e:
            error = self._explain_decode(bytes(raw), e)
        except RecursionError:
            error = TooDeep(f"JSON nested deeper than {self.max_depth} levels")
        except ValidationFailed as e:
            error = e
        return Rejected(error, sent_id(bytes(raw)))

    def from_query(self, args: Mapping[str, str], defaults: Mapping[str, str]) -> Event:
        """The pixel's event, from query parameters (strings converted to their types)."""
        data: dict[str, Any] = {k: v for k, v in args.items() if k != "_"}
        for k, v in defaults.items():
            data.setdefault(k, v)
        minted = "event_id" not in data
        if minted:
            data["event_id"] = uuid.uuid4().hex
        named = data.get("type")
        target = self._by_type.get(named, self.union) if isinstance(named, str) else self.union
        try:
            struct = msgspec.convert(data, target, strict=False)
        except msgspec.ValidationError as e:
            raise self._explain_invalid(None, e, "query") from e
        return self._event(struct, "$", self._clock(), minted)

    def _clock(self) -> _Clock:
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # stamped to the ms
        return _Clock(now, now - self.max_age, now + self.max_skew)

    def _events(self, structs: list[Any], where: str) -> list[Event]:
        """Decoded structs as events, each time checked (and set when absent).

        ``where`` is the path of the list, or ``$`` for a body of one event. It runs for
        every event, so it works on whole lists (C-level ``map``, ``min``, ``max``) and
        goes event by event only to name one out of bounds or to stamp events sent without
        a time.
        """
        now, lo, hi = self._clock()
        times = list(map(_TS, structs))
        unset = times.count(None)
        if unset < len(times):
            sent = [t for t in times if t is not None] if unset else times
            if min(sent) < lo or max(sent) > hi:
                bad = next(i for i, t in enumerate(times) if t is not None and not lo <= t <= hi)
                raise _out_of_window(where if where == "$" else f"{where}[{bad}]")
        if unset:
            for s in structs:
                if s.ts is None:
                    s.ts = now
        return list(map(Event, map(_EVENT_ID, structs), map(_TAG, structs), structs))

    def _event(self, s: Any, where: str, clock: _Clock, minted: bool = False) -> Event:
        ts = s.ts
        if ts is None:
            s.ts = clock.now
        elif not clock.earliest <= ts <= clock.latest:
            raise _out_of_window(where)
        return Event(s.event_id, s.__struct_config__.tag, s, minted)

    def _explain_decode(self, raw: bytes, e: msgspec.DecodeError) -> GatewayError:
        """Why msgspec refused a body, in the words every JSON endpoint uses: the standard
        parser, run on this error path only, names a lone surrogate, a huge number or the
        line and column of a syntax error (msgspec says "truncated" for some of them)."""
        try:
            parse_json(raw, max_depth=self.max_depth)
        except GatewayError as explained:
            return explained
        return InvalidJSON(f"the body is not valid JSON: {e}")

    def _explain_invalid(
        self, raw: bytes | None, e: msgspec.ValidationError, prefix: str
    ) -> GatewayError:
        if raw is not None:
            try:
                if depth_exceeds(json.loads(raw), self.max_depth):
                    return TooDeep(f"JSON nested deeper than {self.max_depth} levels")
            except RecursionError:
                return TooDeep(f"JSON nested deeper than {self.max_depth} levels")
            except ValueError:  # not JSON to Python either (bad UTF-8...): msgspec's word
                pass
        message, _, path = str(e).partition(" - at `")
        path = path.rstrip("`") or "$"
        if prefix == "query":
            path = path.removeprefix("$.").removeprefix("$") or "query"
        elif prefix != "$":
            path = prefix + path.removeprefix("$")
        return ValidationFailed(f"invalid event: {message}", fields={path: message})

    # ------------------------------------------------------------------ splitting
    def splitter(self, context: Mapping[str, Any], granted: frozenset[str]) -> Splitter:
        return Splitter(
            self.purposes,
            context,
            granted,
            self.struct_fields,
            self.context_purposes,
            self._plans.of(context, granted),
        )
