"""POST /v1/batch: the APP's telemetry, accepted event by event, gated field by field."""

from __future__ import annotations

import gzip
import json
import socket
import time
import uuid
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from tests.gateway.test_subjects import app_grant, new_subject
from tests.helpers import DEVICE, GPS, event, stream_events

ALL = {"account_security": True, "personalization": True, "precise_location": True}


def batch(n: int = 3, context: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    events = [event("screen_view", screen=f"product/{i}", **fields) for i in range(n)]
    return {"context": DEVICE if context is None else context, "events": events}


def post(client: FlaskClient, token: str | None, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    if token is not None:
        headers["X-Subject"] = token
    headers.setdefault("Content-Type", "application/json")
    return client.post("/v1/batch", data=data, headers=headers)


@pytest.fixture
def subject(client: FlaskClient) -> str:
    token, _ = new_subject(client)
    return token


def parts_by_purpose(r: redis.Redis) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for _, purpose, part in stream_events(r):
        out.setdefault(purpose, []).append(part)
    return out


# ---------------------------------------------------------------------------- gating
def test_everything_consented_stores_device_context_ip_gps_and_events(client, subject, r):
    app_grant(client, subject, **ALL)
    body = batch(2, gps=GPS)
    resp = post(client, subject, body)
    assert resp.status_code == 202, resp.get_json()
    answer = resp.get_json()
    assert (answer["accepted"], answer["stored"], answer["rejected"]) == (2, 2, 0)
    assert [x["status"] for x in answer["results"]] == ["stored", "stored"]
    assert [x["event_id"] for x in answer["results"]] == [e["event_id"] for e in body["events"]]
    assert set(answer["results"][0]["purposes"]) == set(ALL)
    parts = parts_by_purpose(r)
    security = parts["account_security"][0]
    assert {k: security[k] for k in DEVICE} == DEVICE
    assert security["ip"] == "127.0.0.1"  # from the connection, never from the body
    assert "browser" not in security and "is_bot" not in security  # no user agent parsed
    assert parts["precise_location"][0]["gps"] == GPS
    assert parts["personalization"][0]["screen"] == "product/0"
    assert "device_id" not in parts["personalization"][0]


def test_fields_of_unconsented_purposes_are_dropped_and_counted(client, subject, r):
    app_grant(client, subject, personalization=True)
    answer = post(client, subject, batch(2, gps=GPS)).get_json()
    assert answer["stored"] == 2
    assert answer["results"][0]["purposes"] == ["personalization"]
    parts = parts_by_purpose(r)
    assert set(parts) == {"personalization"}
    for part in parts["personalization"]:
        assert not set(part) & {*DEVICE, "gps", "ip"}
    assert answer["dropped_fields"]["device_id"] == 2
    assert answer["dropped_fields"]["gps"] == 2
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'field="device_id",purpose="account_security"' in metrics


def test_without_consent_nothing_is_stored_and_each_event_says_so(client, subject, r, snap):
    before = snap(r)
    answer = post(client, subject, batch(3)).get_json()
    assert answer["stored"] == 0
    assert {x["status"] for x in answer["results"]} == {"not_consented"}
    assert snap(r) == before


def test_withdrawn_consent_stops_storage_of_the_next_batch(client, subject, r):
    app_grant(client, subject, **ALL)
    assert post(client, subject, batch(1)).get_json()["stored"] == 1
    assert len(stream_events(r)) == 2  # the batch's two parts
    withdrawn = client.delete("/v1/consent", headers={"X-Subject": subject}).get_json()
    assert sum(withdrawn["deleted"].values()) == 2  # and they go with the withdrawal
    answer = post(client, subject, batch(2)).get_json()
    assert answer["stored"] == 0
    assert stream_events(r) == []


def test_gpc_from_the_app_withdraws_advertising_on_the_ledger(client, subject):
    app_grant(client, subject, advertising=True, personalization=True)
    resp = post(client, subject, batch(1), **{"Sec-GPC": "1"})
    assert resp.status_code == 202
    state = client.get("/v1/consent", headers={"X-Subject": subject}).get_json()
    assert state["purposes"]["advertising"]["granted"] is False
    assert state["purposes"]["personalization"]["granted"] is True


# ---------------------------------------------------------------------------- partial acceptance
def test_malformed_events_are_rejected_in_place_and_the_rest_is_stored(client, subject, r):
    app_grant(client, subject, **ALL)
    good1, good2 = event("screen_view", screen="a"), event("search", keyword="M3 螺丝")
    bad_type = event("teleport", screen="x")
    bad_field = event("screen_view", screen="b", ip="6.6.6.6")  # clients never state an IP
    bad_value = event("cart", action="steal", product="p")
    no_id = {"type": "app_open", "screen": "home"}
    bad_ts = event("app_open", ts="2001-01-01T00:00:00Z")
    not_object = ["not", "an", "event"]
    events = [good1, bad_type, bad_field, good2, bad_value, no_id, bad_ts, not_object]
    resp = post(client, subject, {"context": DEVICE, "events": events})
    assert resp.status_code == 202
    answer = resp.get_json()
    statuses = [x["status"] for x in answer["results"]]
    assert statuses == ["stored", *["rejected"] * 2, "stored", *["rejected"] * 4]
    assert (answer["accepted"], answer["stored"], answer["rejected"]) == (2, 2, 6)
    results = answer["results"]
    assert results[1]["event_id"] == bad_type["event_id"]
    assert results[2]["error"]["fields"] == {"$.events[2]": "Object contains unknown field `ip`"}
    assert "$.events[4].action" in results[4]["error"]["fields"]
    assert results[5]["event_id"] is None
    assert "$.events[6].ts" in results[6]["error"]["fields"]
    stored_ids = {p["event_id"] for _, _, p in stream_events(r)}
    assert stored_ids == {good1["event_id"], good2["event_id"]}


def test_a_batch_with_no_valid_event_is_400_naming_each(client, subject, r, snap):
    app_grant(client, subject, **ALL)
    before = snap(r)
    resp = post(client, subject, {"events": [{"type": "x"}, event("cart", quantity=-1)]})
    assert resp.status_code == 400
    err = resp.get_json()["error"]
    assert err["code"] == "no_valid_event"
    assert set(err["fields"]) == {"$.events[0]", "$.events[1]"}
    assert snap(r) == before


@pytest.mark.parametrize(
    ("body", "code", "where"),
    [
        ({"context": {"ip": "6.6.6.6"}, "events": []}, "validation_failed", "$.context"),
        ({"context": {"gps": {"lat": 91, "lon": 0}}, "events": [{}]}, "validation_failed", "lat"),
        ({"context": {"country": "CN"}, "events": [{}]}, "validation_failed", "$.context"),
        ({"events": [], "extra": 1}, "validation_failed", "extra"),
        ({"context": DEVICE}, "validation_failed", "events"),
        ({"events": []}, "validation_failed", "empty"),
        ([], "validation_failed", "$"),
    ],
)
def test_a_bad_body_or_context_refuses_the_whole_batch(client, subject, r, snap, body, code, where):
    app_grant(client, subject, **ALL)
    before = snap(r)
    resp = post(client, subject, body)
    assert resp.status_code == 400, resp.get_json()
    err = resp.get_json()["error"]
    assert err["code"] == code
    assert where in json.dumps(err), err
    assert snap(r) == before


# ---------------------------------------------------------------------------- dedup
def test_a_batch_sent_again_is_stored_once(client, subject, r):
    app_grant(client, subject, **ALL)
    body = batch(5)
    first = post(client, subject, body).get_json()
    again = post(client, subject, body).get_json()
    assert first["stored"] == 5
    assert (again["stored"], again["duplicates"]) == (0, 5)
    assert {x["status"] for x in again["results"]} == {"duplicate"}
    ids = [p["event_id"] for _, _, p in stream_events(r, "personalization")]
    assert sorted(ids) == sorted(e["event_id"] for e in body["events"])


def test_a_batch_whose_answer_was_lost_is_stored_once_when_sent_again(
    client, subject, r, serve, app
):
    """Over real HTTP: the APP sends, loses the connection before the answer, sends again."""
    app_grant(client, subject, personalization=True)
    live = serve(app)
    body = gzip.compress(json.dumps(batch(50)).encode())
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
        f"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
        f"Content-Length: {len(body)}\r\nX-Subject: {subject}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + 10
    while len(stream_events(r)) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    again = post(client, subject, body, **{"Content-Encoding": "gzip"}).get_json()
    assert (again["stored"], again["duplicates"]) == (0, 50)
    assert len(stream_events(r)) == 50


# ---------------------------------------------------------------------------- size and encoding
def test_gzip_bodies_are_accepted(client, subject, r):
    app_grant(client, subject, **ALL)
    raw = gzip.compress(json.dumps(batch(500), ensure_ascii=False).encode())
    resp = post(client, subject, raw, **{"Content-Encoding": "gzip"})
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["stored"] == 500
    assert len(stream_events(r, "personalization")) == 500


def test_more_than_500_events_is_413_and_stores_nothing(client, subject, r, snap):
    app_grant(client, subject, **ALL)
    before = snap(r)
    resp = post(client, subject, batch(501))
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "too_many_events"
    assert snap(r) == before


def test_a_body_over_one_mib_is_413(client, subject, r, snap):
    app_grant(client, subject, **ALL)
    before = snap(r)
    big = batch(500, title="x" * 500)  # page titles: up to 512 characters
    for e in big["events"]:
        e.update(type="page_view", url="https://shop.example.com/" + "p" * 1500)
        del e["screen"]
    raw = json.dumps(big).encode()
    assert len(raw) > 1024 * 1024
    plain = post(client, subject, raw)
    assert plain.status_code == 413
    zipped = post(client, subject, gzip.compress(raw), **{"Content-Encoding": "gzip"})
    assert zipped.status_code == 413
    assert zipped.get_json()["error"]["code"] == "inflated_too_large"
    assert snap(r) == before


def test_a_gzip_bomb_is_refused_without_being_inflated(client, subject, r, snap):
    app_grant(client, subject, **ALL)
    before = snap(r)
    bomb = gzip.compress(b"[" + b" " * (512 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 1024 * 1024  # small on the wire
    started = time.monotonic()
    resp = post(client, subject, bomb, **{"Content-Encoding": "gzip"})
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "inflated_too_large"
    assert time.monotonic() - started < 2  # inflating 512 MiB would take far longer
    assert snap(r) == before


@pytest.mark.parametrize(
    ("data", "headers", "status", "code"),
    [
        (
            gzip.compress(b'{"events": []}', mtime=0)[:-6],
            {"Content-Encoding": "gzip"},
            400,
            "invalid_encoding",
        ),
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400, "invalid_encoding"),
        (gzip.compress(b"{}", mtime=0) * 2, {"Content-Encoding": "gzip"}, 400, "invalid_encoding"),
        (b'{"events": []}', {"Content-Encoding": "br"}, 415, "unsupported_encoding"),
        (b'{"events": []}', {"Content-Type": "application/xml"}, 415, "unsupported_media_type"),
        (b'{"events": [', {}, 400, "invalid_json"),
        (b'{"events": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}, 400, "too_deep"),
    ],
)
def test_bad_bytes_get_a_named_4xx(client, subject, data, headers, status, code):
    resp = post(client, subject, data, **headers)
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["code"] == code


def test_an_event_with_invalid_utf8_is_rejected_and_the_others_stored(client, subject, r):
    app_grant(client, subject, **ALL)
    good = json.dumps(event("search", keyword="ok")).encode()
    bad = b'{"event_id": "bad-utf8-1", "type": "search", "keyword": "\xff\xfe"}'
    resp = post(client, subject, b'{"events": [' + good + b"," + bad + b"]}")
    assert resp.status_code == 202
    results = resp.get_json()["results"]
    assert [x["status"] for x in results] == ["stored", "rejected"]
    assert results[1]["error"]["code"] == "invalid_encoding"
    assert results[1]["event_id"] == "bad-utf8-1"
    assert [p["keyword"] for _, _, p in stream_events(r, "personalization")] == ["ok"]


# ---------------------------------------------------------------------------- who
def test_a_batch_needs_a_valid_subject_token(client, subject):
    body = batch(1)
    missing = post(client, None, body)
    assert missing.status_code == 401
    assert missing.get_json()["error"]["code"] == "subject_required"
    forged = post(client, subject[:-3] + "abc", body)
    assert forged.status_code == 401
    assert forged.get_json()["error"]["code"] == "invalid_subject"
    other_key = post(client, "Zm9v." + uuid.uuid4().hex, body)
    assert other_key.status_code == 401


def test_a_browser_cookie_is_not_a_batch_subject(client):
    from tests.helpers import grant

    grant(client, personalization=True)  # the client now holds a _vid cookie
    resp = post(client, None, batch(1))
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "subject_required"


def test_storage_down_is_503_for_the_whole_batch_and_recovers(servers, gateways):
    server = servers.valkey("batch-outage")
    port = server.port
    client = gateways(server.connection_url).test_client()
    token, _ = new_subject(client)
    app_grant(client, token, **ALL)
    body = batch(20)
    server.stop()
    started = time.monotonic()
    down = post(client, token, body)
    assert down.status_code == 503
    assert time.monotonic() - started < 5
    assert down.headers["Retry-After"]
    again = servers.valkey("batch-outage", port=port)
    probe = redis.Redis.from_url(again.connection_url, decode_responses=True)
    try:
        assert stream_events(probe) == []
        deadline = time.monotonic() + 10
        while True:
            resp = post(client, token, body)
            if resp.status_code == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert resp.get_json()["stored"] == 20
        assert len(stream_events(probe)) == 40  # personalization and account_security
    finally:
        probe.close()


# ---------------------------------------------------------------------------- X-Consent hint
def _hgetalls(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))


def test_consent_answers_give_the_app_a_hint_that_spares_the_consent_read(client, subject, r):
    answer = client.post(
        "/v1/consent",
        json={"policy_version": "2026-11-01", "purposes": ALL, "source": "app"},
        headers={"X-Subject": subject},
    )
    assert answer.status_code == 400  # precise location is granted alone
    assert answer.get_json()["error"]["code"] == "separate_consent_required"
    app_grant(client, subject, **ALL)
    hint = client.get("/v1/consent", headers={"X-Subject": subject}).headers["X-Consent"]
    before = _hgetalls(r)
    resp = post(client, subject, batch(3), **{"X-Consent": hint})
    assert resp.get_json()["stored"] == 3
    assert _hgetalls(r) == before  # one round trip: the script checked the hint's head
    without = post(client, subject, batch(3))
    assert without.get_json()["stored"] == 3
    assert _hgetalls(r) == before + 1
    assert without.headers["X-Consent"]  # a hint for the next batch


def test_a_stale_or_forged_hint_never_stores_what_the_ledger_refuses(client, subject, r):
    app_grant(client, subject, **ALL)
    hint = client.get("/v1/consent", headers={"X-Subject": subject}).headers["X-Consent"]
    client.delete("/v1/consent", headers={"X-Subject": subject})  # everything withdrawn
    stale = post(client, subject, batch(2), **{"X-Consent": hint})
    assert stale.get_json()["stored"] == 0
    forged = post(client, subject, batch(2), **{"X-Consent": hint[:-4] + "AAAA"})
    assert forged.get_json()["stored"] == 0
    assert stream_events(r) == []
