"""End to end on every store the gateway runs on: the embedded Valkey, Debian's Redis 7.0 and a
3-master Valkey cluster (``stores``: each test runs once on each). What a visitor, the APP,
a mail and an operator do, through the WSGI app, with the store checked directly.

The storage modules (access, erasure, retention, events, subjects, API keys, rate limits, the
storage guarantees of test_store) carry the same mark; this module covers the flows they do
not: the consent ledger and its receipts, the pixel and the APP's batch, saved logins, mail
and SMS unsubscribes, and /healthz.
"""

from __future__ import annotations

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.core.links import MailTokens
from gateway.core.tokens import VID_COOKIE

from ..helpers import CURRENT, K, app_subject, data_keys, event, grant, page_view, stream_events

pytestmark = pytest.mark.stores

PIXEL = "/p.gif?type=page_view&url=https%3A%2F%2Fshop.example.com%2Fp%2F7"
HOME = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}


def _subject(client: FlaskClient) -> str:
    """The browser's subject id, from its signed ``_vid`` cookie."""
    return client.get_cookie(VID_COOKIE).value.split(".")[0]  # type: ignore[union-attr]


def test_consent_history_receipt_and_withdrawal(client: FlaskClient, r: redis.Redis) -> None:
    first = grant(client, personalization=True)["receipt"]
    second = grant(client, advertising=True, personalization=True)["receipt"]
    assert client.delete("/v1/consent").status_code == 200
    hist = client.get("/v1/consent/history").get_json()
    assert hist["chain"]["intact"] is True and hist["length"] == 3
    assert [e["action"] for e in hist["entries"]] == ["consent", "consent", "withdraw"]
    assert hist["entries"][1]["prev"] == first["hash"]
    check = client.post("/v1/consent/verify", json=second).get_json()
    assert check["valid"] is True and check["checks"]["on_ledger"] is True
    sid = _subject(client)
    assert r.llen(K.ledger(sid)) == 3
    state = client.get("/v1/consent").get_json()["purposes"]
    assert [name for name, p in state.items() if p["granted"]] == ["necessary"]


def test_pixel_and_events_store_once_per_purpose_in_the_subjects_group(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True, account_security=True)
    assert client.get(PIXEL, headers=HOME).status_code == 200
    ev = page_view()
    for _ in range(2):  # the second is a duplicate
        assert client.post("/v1/events", json=ev).status_code == 202
    sid = _subject(client)
    parts = stream_events(r)
    assert {key for key, _, _ in parts} == {
        K.stream("personalization", sid),
        K.stream("account_security", sid),
    }
    assert sorted(part["type"] for _, p, part in parts if p == "personalization") == [
        "page_view",
        "page_view",
    ]
    assert sum(part.get("event_id") == ev["event_id"] for _, _, part in parts) == 2  # 1 a purpose


def test_an_app_batch_is_gated_field_by_field(client: FlaskClient, r: redis.Redis) -> None:
    sid, token = app_subject(client, account_security=True)
    body = {
        "context": {"os": "HarmonyOS", "device_model": "Mate 60"},
        "events": [event("screen_view", screen="home", gps={"lat": 31.2, "lon": 121.4})],
    }
    resp = client.post("/v1/batch", json=body, headers={"X-Subject": token})
    assert resp.status_code == 202 and resp.get_json()["stored"] == 1
    [(key, purpose, part)] = stream_events(r)
    assert key == K.stream("account_security", sid) and purpose == "account_security"
    assert part["os"] == "HarmonyOS" and "gps" not in part and "screen" not in part


def test_access_and_erasure_reach_every_key_of_the_subject(
    client: FlaskClient, r: redis.Redis
) -> None:
    other = grant_elsewhere(client.application)
    grant(client, personalization=True, advertising=True)
    client.post("/v1/events", json={"events": [page_view() for _ in range(3)]})
    held = client.get("/v1/subject").get_json()
    assert {k: len(v) for k, v in held["events"].items()} == {"personalization": 3}
    before = set(data_keys(r))
    assert client.delete("/v1/subject").status_code == 200
    left = set(data_keys(r))
    shared = (":suppress:", ":ev:", ":aud:")  # the groups' lists, streams and audience shards
    assert left and all(other in key or any(s in key for s in shared) for key in left)
    assert before - left  # the subject's own keys went
    assert not [p for _, _, p in stream_events(r) if p["sid"] != other]


def grant_elsewhere(app: Flask) -> str:
    """A second visitor, who must keep everything: its subject id."""
    other = app.test_client()
    grant(other, personalization=True)
    other.post("/v1/events", json=page_view())
    return _subject(other)


def test_unsubscribes_by_mail_and_sms_reach_the_suppression_lists(
    app: Flask, client: FlaskClient, r: redis.Redis
) -> None:
    mail: MailTokens = app.extensions["gateway"].mail
    sids = [app_subject(client, advertising=True)[0] for _ in range(6)]
    for sid in sids[:3]:
        assert client.post(f"/u/{mail.unsubscribe_token(sid, 'email')}").status_code == 200
    code = app.extensions["gateway"].sms.new_code(sids[3])
    assert client.post(f"/u/{code}").status_code == 200
    key = app.extensions["gateway"].apikeys.create("campaigns", ["senders"])
    lines = client.get(
        "/v1/senders/suppressions?channel=email&end=1", headers={"Authorization": f"Bearer {key}"}
    ).get_data(as_text=True)
    assert all(sid in lines for sid in sids[:3]) and sids[3] not in lines
    assert '{"end": true, "count": 3}' in lines
    groups = {K.suppression("email", sid) for sid in sids[:3]}
    assert all(r.zcard(group) >= 1 for group in groups)


def test_a_saved_login_resumes_rotates_and_is_revoked_on_withdrawal(
    app: Flask, client: FlaskClient
) -> None:
    key = app.extensions["gateway"].apikeys.create("backend", ["saved_login"])
    auth = {"Authorization": f"Bearer {key}"}
    sid, token = app_subject(client, saved_login=True)
    body = {"account": "buyer-1", "subject": sid}
    issued = client.post("/v1/saved-login", json=body, headers=auth).get_json()
    resumed = client.post(
        "/v1/saved-login/resume", json={"token": issued["token"]}, headers=auth
    ).get_json()
    assert resumed["account"] == "buyer-1" and resumed["token"] != issued["token"]
    consent = {"policy_version": CURRENT, "purposes": {"saved_login": False}, "source": "app"}
    assert client.post("/v1/consent", json=consent, headers={"X-Subject": token}).status_code == 201
    gone = client.post("/v1/saved-login/resume", json={"token": resumed["token"]}, headers=auth)
    assert gone.status_code == 401


def test_healthz_names_the_durability_the_store_gives(client: FlaskClient, redis_url: str) -> None:
    grant(client, personalization=True)
    health = client.get("/healthz").get_json()
    assert health["storage"] == "ok"
    server = redis.Redis.from_url(redis_url, decode_responses=True)
    version = server.info("server")["redis_version"]
    server.close()
    waitaof = tuple(int(x) for x in version.split(".")[:2]) >= (7, 2)
    assert health["consent_durability"] == ("waitaof" if waitaof else "aof-unconfirmed")
