"""Erasing a subject on request (clause 4): everything about it goes, at once."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from jwcrypto import jwk, jws

from gateway.core.tokens import VID_COOKIE

from ..conftest import ORIGIN
from ..helpers import CURRENT, K, grant, page_view, stream_events

pytestmark = pytest.mark.stores  # run on the embedded Valkey, Redis 7.0 and a cluster


def _everything_about(r: redis.Redis, sid: str) -> list[str]:
    """Keys that name the subject or hold it, but for the senders' suppression lists."""
    found = []
    for key in r.scan_iter(count=1000):
        if ":suppress:" in key:
            continue
        kind = r.type(key)
        if kind == "hash":
            content: Any = r.hgetall(key)
        elif kind == "set":
            content = r.smembers(key)
        elif kind == "zset":
            content = r.zrange(key, 0, -1)
        elif kind == "stream":
            content = r.xrange(key)
        elif kind == "list":
            content = r.lrange(key, 0, -1)
        else:
            content = r.get(key)
        if sid in key or sid in repr(content):
            found.append(key)
    return found


def test_a_browser_erases_itself(app: Flask, client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True, account_security=True, advertising=True, saved_login=True)
    sid = client.get_cookie(VID_COOKIE).value.split(".")[0]
    svc = app.extensions["gateway"]
    code = svc.sms.new_code(sid, phone="13800138000")
    client.delete("/v1/consent", headers={"Origin": ORIGIN})  # on the suppression lists now
    grant(client, personalization=True, account_security=True, saved_login=True)
    client.post(
        "/v1/events", json={"events": [page_view(), page_view()]}, headers={"Origin": ORIGIN}
    )
    token, _ = svc.logins.issue("buyer-1", sid, 3600)
    assert _everything_about(r, sid)

    resp = client.delete("/v1/subject", headers={"Origin": ORIGIN})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["erased"] is True and body["removed"]["event_entries"] >= 2
    assert body["removed"]["saved_logins"] == 1
    assert _everything_about(r, sid) == []
    assert stream_events(r) == []
    assert client.get_cookie(VID_COOKIE) is None  # the browser forgets it too
    assert sid in r.zrange(K.suppression("email", sid), 0, -1)  # never contacted again
    with pytest.raises(Exception, match="not valid"):
        svc.logins.resume(token)
    assert client.get(f"/u/{code}").status_code == 404
    assert client.get("/v1/subject").get_json()["subject"] is None


def test_staff_erase_on_a_written_request(app: Flask, client: FlaskClient, r: redis.Redis) -> None:
    made = client.post("/v1/subjects").get_json()
    sid, headers = made["subject"], {"X-Subject": made["token"]}
    client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": {"personalization": True}, "source": "app"},
        headers=headers,
    )
    client.post(
        "/v1/batch",
        json={"events": [{"event_id": "app-event-1", "type": "app_open", "screen": "home"}]},
        headers=headers,
    )
    keys = app.extensions["gateway"].apikeys
    staff = {"Authorization": f"Bearer {keys.create('privacy desk', ['erasure'])}"}
    senders = {"Authorization": f"Bearer {keys.create('mailer', ['senders'])}"}
    assert client.delete(f"/v1/subjects/{sid}", headers=senders).status_code == 401
    assert client.delete("/v1/subjects/not-a-subject", headers=staff).status_code == 400
    resp = client.delete(f"/v1/subjects/{sid}", headers=staff)
    assert resp.get_json()["removed"]["event_entries"] == 1
    assert _everything_about(r, sid) == []
    state = client.get("/v1/consent", headers=headers).get_json()
    assert state["recorded"] is False  # deny by default again
    again = client.delete(f"/v1/subjects/{sid}", headers=staff).get_json()
    assert again["removed"] == {"event_entries": 0, "saved_logins": 0}


def test_erasure_is_refused_cross_site_and_harmless_without_a_subject(
    client: FlaskClient,
) -> None:
    grant(client, personalization=True)
    assert (
        client.delete("/v1/subject", headers={"Origin": "https://evil.example"}).status_code == 403
    )
    assert client.get("/v1/consent").get_json()["purposes"]["personalization"]["granted"]
    fresh = client.application.test_client()
    assert fresh.delete("/v1/subject").get_json() == {"subject": None, "erased": False}


def test_an_erasure_that_finds_nothing_asks_for_no_rewrite(
    app: Flask, client: FlaskClient, r: redis.Redis
) -> None:
    """Each erasure that removed something asks the store to rewrite its files; a repeated
    one removes nothing and must not (else one request every few seconds keeps the store
    rewriting its whole append-only file for ever)."""
    headers = {"X-Subject": app.extensions["gateway"].tokens.sign_subject("a" * 32)}
    grant_resp = client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": {"personalization": True}, "source": "app"},
        headers=headers,
    )
    assert grant_resp.status_code == 201
    for _ in range(5):
        assert client.delete("/v1/subject", headers=headers).status_code == 200
    assert r.hget("gw:erasure", "seq") == "1"


def verified(client: FlaskClient, receipt: dict[str, Any]) -> dict[str, Any]:
    """The receipt's JWS checked as a third party would: jwcrypto, the published keys."""
    keys = jwk.JWKSet.from_json(client.get("/.well-known/jwks.json").get_data(as_text=True))
    token = jws.JWS()
    token.deserialize(receipt["jws"])
    token.verify(keys.get_key(token.jose_header["kid"]))  # raises if the signature is wrong
    assert token.jose_header["typ"] == "erasure-receipt+jws"  # not a consent receipt
    payload: dict[str, Any] = json.loads(token.payload)
    return payload


def test_an_erasure_answers_a_signed_receipt_of_everything_removed(
    app: Flask, client: FlaskClient, r: redis.Redis
) -> None:
    svc = app.extensions["gateway"]
    made = client.post("/v1/subjects").get_json()
    sid, headers = made["subject"], {"X-Subject": made["token"]}
    decided = {"personalization": True, "advertising": True, "saved_login": True}
    client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": decided, "source": "app"},
        headers=headers,
    )
    for i in range(3):  # three requests: three stream entries
        body = {"events": [{"event_id": f"erase-r-{i}", "type": "app_open", "screen": "home"}]}
        assert client.post("/v1/batch", json=body, headers=headers).get_json()["stored"] == 1
    svc.logins.issue("buyer-9", sid, 3600)
    svc.sms.new_code(sid, phone="13800138000")
    svc.accounts.link("buyer-9", sid)
    svc.accounts.set_traits("buyer-9", {"company_size": "20-99"})
    svc.indexer.run_until_idle()  # the audience index numbers the person
    client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": {"advertising": False}, "source": "app"},
        headers=headers,
    )  # on the lists now

    staff = {"Authorization": f"Bearer {svc.apikeys.create('desk', ['erasure'])}"}
    answer = client.delete(f"/v1/subjects/{sid}", headers=staff).get_json()
    receipt = answer["receipt"]
    assert verified(client, receipt) == {k: v for k, v in receipt.items() if k != "jws"}
    assert receipt["action"] == "erasure" and receipt["subject"] == sid
    assert receipt["source"] == "request" and len(receipt["id"]) == 32
    removed = receipt["removed"]
    assert removed == {
        "event_entries": 3,
        "consent_state": True,
        "ledger_entries": 2,
        "remembered_event_ids": 3,
        "saved_logins": 1,
        "sms_codes_and_phone_hashes": 2,  # the code, and the number's keyed hash
        "account_link": True,
        "account_traits": True,  # its last subject: the traits go too
        "audience_index": True,  # its account's person marked out of every count
    }
    assert receipt["kept"]["suppression_lists"] == ["email", "sms"]
    assert answer["removed"] == {"event_entries": 3, "saved_logins": 1}
    assert _everything_about(r, sid) == []
    # a receipt altered after issue does not verify
    forged = dict(receipt, removed=dict(removed, event_entries=0))
    assert verified(client, forged) != {k: v for k, v in forged.items() if k != "jws"}

    # erasing again finds nothing, and says so, signed as well
    again = client.delete(f"/v1/subjects/{sid}", headers=staff).get_json()["receipt"]
    assert again["removed"]["consent_state"] is False and again["removed"]["ledger_entries"] == 0
    assert verified(client, again)["id"] == again["id"] != receipt["id"]
