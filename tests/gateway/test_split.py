"""Splitting events by purpose (gateway/split.py), and the counts of what was kept.

The splitter has a fast path (an event whose fields all serve its type's main purpose is
encoded whole) and a general one. Both must give the same parts: the properties below check
each part against a plain reading of the catalogue, and the counts against a naive tally.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.catalogue import load
from gateway.core.events import EventCodec
from gateway.core.parts import Event
from gateway.core.split import WHOLE_MIN, Splitter

CAT = load(None)
CODEC = EventCodec(CAT)
ENVELOPE = ("event_id", "type", "ts")
DEVICE = {
    "device_model": "HUAWEI Mate 60 Pro",
    "os": "HarmonyOS",
    "device_id": "0f8e2c1a",
    "carrier": "中国移动",
    "app_version": "3.8.1",
    "gps": {"lat": 31.2, "lon": 121.4},
}
REQUEST = {"ip": "114.114.114.114", "country": "中国", "province": "江苏", "city": "南京"}
SAMPLES: dict[str, Any] = {
    "url": "https://shop.example.com/p/1",
    "referrer": "https://www.example.com/",
    "title": "螺丝 M3",
    "keyword": "M3",
    "product": "screw",
    "model": "DIN 912",
    "target": "buy",
    "drawing_id": "d-1",
    "format": "step",
    "action": "add",
    "quantity": 3,
    "price": 1.5,
    "quote_id": "q-1",
    "category": "FAST-0102",
    "channel": "phone",
    "topic": "price",
    "software": "SolidWorks",
    "screen": "home",
    "gps": {"lat": 39.9, "lon": 116.4, "accuracy": 10.0},
}
PURPOSES = sorted(CAT.optional_purposes)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def decode(events: list[dict[str, Any]], context: dict[str, Any] | None = None) -> list[Event]:
    body: dict[str, Any] = {"events": events}
    if context is not None:
        body["context"] = {k: v for k, v in context.items() if k in CAT.app_context_fields}
    _, decoded = CODEC.decode_batch(json.dumps(body).encode(), 500)
    assert all(isinstance(d, Event) for d in decoded)
    return decoded  # type: ignore[return-value]


def expected_parts(event: dict[str, Any], context: dict[str, Any], granted: frozenset[str]):
    """What each granted purpose must hold of one event, read off the catalogue."""
    mapping = CODEC.purposes[event["type"]]
    out: dict[str, dict[str, Any]] = {}
    for name, value in context.items():
        if mapping[name] in granted:
            out.setdefault(mapping[name], {})[name] = value
    for name, value in event.items():
        if name not in ENVELOPE and mapping[name] in granted:
            out.setdefault(mapping[name], {})[name] = value  # the event's own value wins
    return out


def parts_as_dicts(parts: list[tuple[str, bytes]], splitter: Splitter) -> dict[str, dict[str, Any]]:
    """Each part as a reader sees it: with its purpose's context (stored once per stream
    entry) merged in, the part's own values first."""
    found: dict[str, dict[str, Any]] = {}
    for purpose, data in parts:
        assert purpose not in found, "one part per purpose"
        part = json.loads(data)
        context = json.loads(splitter.contexts.get(purpose, b"{}"))
        found[purpose] = {**part, **{k: v for k, v in context.items() if k not in part}}
    assert list(found) == sorted(found), "parts come in purpose order (the store's bit order)"
    return found


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    type_ = draw(st.sampled_from(sorted(CAT.client_events)))
    own = [*CAT.events[type_].fields, "gps"]
    chosen = draw(st.lists(st.sampled_from(own), unique=True))
    event: dict[str, Any] = {"event_id": f"ev-{draw(st.integers(0, 10**9)):010d}", "type": type_}
    event.update({name: SAMPLES[name] for name in chosen})
    if draw(st.booleans()):
        event["ts"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    return event


contexts = st.sampled_from(
    [{}, REQUEST, {**DEVICE, **REQUEST}, DEVICE, {"carrier": "中国电信", "gps": DEVICE["gps"]}]
)
grants = st.frozensets(st.sampled_from(PURPOSES))


@SETTINGS
@given(st.lists(events(), min_size=1, max_size=8), contexts, grants)
def test_parts_hold_exactly_the_granted_fields(
    sent: list[dict[str, Any]], context: dict[str, Any], granted: frozenset[str]
) -> None:
    decoded = decode(sent)
    splitter = CODEC.splitter(context, granted)
    for raw, event in zip(sent, decoded, strict=True):
        parts = parts_as_dicts(splitter.split(event), splitter)
        slow = parts_as_dicts(splitter._split_slowly(event, splitter._types[event.type]), splitter)
        assert parts == slow  # the fast path and the general one agree
        want = expected_parts(raw, context, granted)
        assert set(parts) == set(want)
        for purpose, part in parts.items():
            assert part["event_id"] == raw["event_id"]
            assert part["type"] == raw["type"]
            ts = datetime.fromisoformat(part["ts"])
            if "ts" in raw:
                assert ts == datetime.fromisoformat(raw["ts"])
            else:  # the gateway's clock, to the millisecond
                assert abs(datetime.now(UTC) - ts) < timedelta(minutes=1)
                assert ts.microsecond % 1000 == 0
            assert {k: v for k, v in part.items() if k not in ENVELOPE} == want[purpose]


@SETTINGS
@given(st.lists(events(), min_size=WHOLE_MIN, max_size=16), contexts, grants)
def test_a_whole_batch_grouped_at_once_equals_one_event_at_a_time(
    sent: list[dict[str, Any]], context: dict[str, Any], granted: frozenset[str]
) -> None:
    """The fast grouping (one encoding of all the structs, the envelopes in one go) must
    give the store exactly what grouping each event's parts gives it, or not be used."""
    decoded = decode(sent)
    split = CODEC.splitter(context, granted).split_all(decoded)
    by_event = CODEC.splitter(context, granted).split_all(decoded)._parts()
    everything = list(range(len(decoded)))
    assert split.purposes == by_event.purposes
    if not split.purposes:
        assert split.empty
        return
    fast, slow = split.batch(everything), by_event.batch(everything)
    assert fast.masks == slow.masks and fast.counts == slow.counts
    for a, b in zip(fast.arrays, slow.arrays, strict=True):
        assert json.loads(a) == json.loads(b)
    # a resend of some of them (after duplicates) keeps the request's purposes in place
    some = everything[::2]
    part, want = split.batch(some), by_event.batch(some)
    assert part.masks == want.masks and part.counts == want.counts


def test_the_usual_app_batch_is_grouped_whole() -> None:
    sent = [
        {"event_id": f"ev-{i:08d}", "type": "search" if i % 2 else "page_view", **fields}
        for i, fields in enumerate([{"url": SAMPLES["url"]}, {"keyword": "M3"}] * 50)
    ]
    split = CODEC.splitter(DEVICE | {"ip": "1.2.3.4"}, frozenset(PURPOSES)).split_all(decode(sent))
    assert split._whole is not None
    assert split.purposes == ["account_security", "personalization", "precise_location"]
    # one with a field of another purpose (its own gps) sends the request one event at a time
    sent[3]["gps"] = SAMPLES["gps"]
    split = CODEC.splitter(DEVICE | {"ip": "1.2.3.4"}, frozenset(PURPOSES)).split_all(decode(sent))
    assert split._whole is None


@SETTINGS
@given(
    st.lists(events(), min_size=1, max_size=8),
    contexts,
    grants,
    st.data(),
)
def test_tally_counts_each_field_once_where_it_went(
    sent: list[dict[str, Any]], context: dict[str, Any], granted: frozenset[str], data: Any
) -> None:
    decoded = decode(sent)
    splitter = CODEC.splitter(context, granted)
    split = [splitter.split(e) for e in decoded]
    # what a store could answer: a duplicate, or some of the purposes the event had parts for
    outcomes: list[tuple[str, ...] | None] = []
    for parts in split:
        had = [p for p, _ in parts]
        if data.draw(st.booleans()):
            outcomes.append(None)
        else:
            outcomes.append(tuple(p for p in had if data.draw(st.booleans())))
    tally = splitter.tally(decoded, outcomes)

    stored: dict[tuple[str, str], int] = {}
    dropped: dict[tuple[str, str], int] = {}
    parts_stored: dict[str, int] = {}
    for raw, kept in zip(sent, outcomes, strict=True):
        mapping = CODEC.purposes[raw["type"]]
        fields = {**context, **{k: v for k, v in raw.items() if k not in ENVELOPE}}
        for name in fields:
            purpose = mapping[name]
            key = (purpose, name)
            if purpose not in granted:
                dropped[key] = dropped.get(key, 0) + 1
            elif kept is None:
                continue
            elif purpose in kept:
                stored[key] = stored.get(key, 0) + 1
            else:
                dropped[key] = dropped.get(key, 0) + 1
        for purpose in kept or ():
            parts_stored[purpose] = parts_stored.get(purpose, 0) + 1
    assert tally.stored_fields == stored
    assert tally.dropped_fields == dropped
    assert tally.stored_parts == parts_stored
    assert tally.duplicates == outcomes.count(None)
    assert tally.stored == sum(1 for kept in outcomes if kept)


def test_the_usual_event_is_encoded_whole_with_its_context() -> None:
    """A page view with its own fields only: one encoding joined to the context fragments."""
    [event] = decode([{"event_id": "ev-00000001", "type": "page_view", "url": SAMPLES["url"]}])
    granted = frozenset({"account_security", "personalization"})
    splitter = CODEC.splitter({**DEVICE, **REQUEST}, granted)
    raw = dict(splitter.split(event))
    # the context is not copied into the parts: it is stored once per entry
    assert set(json.loads(raw["account_security"])) == set(ENVELOPE)
    assert set(json.loads(raw["personalization"])) == {*ENVELOPE, "url"}
    parts = parts_as_dicts(splitter.split(event), splitter)
    assert splitter._types["page_view"].fast is not None
    assert parts["personalization"] == {
        "event_id": "ev-00000001",
        "type": "page_view",
        "ts": parts["personalization"]["ts"],
        "url": SAMPLES["url"],
        "country": "中国",
        "province": "江苏",
        "city": "南京",
    }
    assert set(parts["account_security"]) == {
        *ENVELOPE,
        "ip",
        "device_model",
        "os",
        "device_id",
        "carrier",
        "app_version",
    }
    assert "precise_location" not in parts  # gps of the context: not granted, not stored


def test_an_event_with_nothing_for_a_purpose_has_no_part_for_it() -> None:
    [event] = decode([{"event_id": "ev-00000002", "type": "app_open"}])
    granted = frozenset({"account_security", "personalization"})
    splitter = CODEC.splitter(DEVICE, granted)
    assert [p for p, _ in splitter.split(event)] == ["account_security"]
    splitter = CODEC.splitter({}, granted)
    assert splitter.split(event) == []


def test_an_events_own_gps_wins_over_the_devices() -> None:
    own = {"lat": 39.9, "lon": 116.4}
    [event] = decode([{"event_id": "ev-00000003", "type": "screen_view", "gps": own}])
    splitter = CODEC.splitter(DEVICE, frozenset({"precise_location"}))
    parts = parts_as_dicts(splitter.split(event), splitter)
    assert list(parts) == ["precise_location"]
    assert parts["precise_location"]["gps"] == own


@pytest.mark.parametrize("ts", ["2020-01-01T00:00:00Z", "2099-01-01T00:00:00+08:00"])
def test_an_event_time_out_of_the_window_is_refused_in_its_place(ts: str) -> None:
    body = {
        "events": [
            {"event_id": "ev-00000004", "type": "app_open"},
            {"event_id": "ev-00000005", "type": "app_open", "ts": ts},
        ]
    }
    _, decoded = CODEC.decode_batch(json.dumps(body).encode(), 500)
    assert isinstance(decoded[0], Event)
    refused = decoded[1]
    assert not isinstance(refused, Event)
    assert refused.event_id == "ev-00000005"
    assert "$.events[1].ts" in refused.error.body()["error"]["fields"]


def test_structs_leave_unset_fields_out_of_their_encoding() -> None:
    """The fast path relies on it: an unset field must not appear as null."""
    [event] = decode([{"event_id": "ev-00000006", "type": "search", "keyword": "M3"}])
    encoded = json.loads(msgspec.json.encode(event.struct))
    assert set(encoded) == {"event_id", "type", "ts", "keyword"}
