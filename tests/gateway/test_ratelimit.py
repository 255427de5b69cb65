"""Rate limits: buckets in the store, per address for new subjects, per subject for ledger
writes and events; 429 with Retry-After, nothing stored; off with GATEWAY_RATE_LIMITS=off."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.core.config import from_env
from gateway.core.ratelimit import AddressKeys

from ..conftest import Gateways, Snapshot
from ..helpers import CURRENT, K, grant, page_view, stream_events

pytestmark = pytest.mark.stores  # run on the embedded Valkey, Redis 7.0 and a cluster

SMALL = {
    "RATE_NEW_SUBJECTS_BURST": 3,
    "RATE_NEW_SUBJECTS_PER_HOUR": 36_000,  # one every 100 ms
    "RATE_LEDGER_BURST": 3,
    "RATE_LEDGER_PER_HOUR": 36_000,
    "RATE_EVENTS_BURST": 5,
    "RATE_EVENTS_PER_HOUR": 36_000,
    "MAX_EVENTS_PER_REQUEST": 5,
    "MAX_EVENTS_PER_BATCH": 5,
}
SLOW = {  # buckets that do not refill during a test
    **SMALL,
    "RATE_NEW_SUBJECTS_PER_HOUR": 1,
    "RATE_LEDGER_PER_HOUR": 1,
    "RATE_EVENTS_PER_HOUR": 1,
}


def refused(resp: Any, limit: str) -> None:
    """A 429 in the usual error shape, naming the bucket, with a Retry-After in seconds."""
    assert resp.status_code == 429, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"]["code"] == "rate_limited" and body["error"]["fields"]["limit"] == limit
    assert int(resp.headers["Retry-After"]) >= 1
    assert body["error"]["fields"]["retry_after_s"] == int(resp.headers["Retry-After"])


def browser(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def consent(client: FlaskClient, **purposes: bool) -> Any:
    return client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": purposes, "source": "banner"},
    )


def test_new_subjects_per_address(gateways: Gateways, redis_url: str, r: redis.Redis) -> None:
    app = gateways(redis_url, **SLOW)
    one = browser(app, "203.0.113.7")
    for _ in range(3):
        assert one.post("/v1/subjects").status_code == 201
    refused(one.post("/v1/subjects"), "new_subjects")
    # another address has its own bucket; the bucket's name is a keyed hash, not the address
    assert browser(app, "203.0.113.8").post("/v1/subjects").status_code == 201
    keys = list(r.scan_iter("rl:*"))
    assert len(keys) == 2 and not any("203.0.113" in k for k in keys)
    assert all(r.pttl(k) > 0 for k in keys)  # a bucket ends once full again


def test_ipv6_addresses_count_per_64(gateways: Gateways, redis_url: str) -> None:
    app = gateways(redis_url, **SLOW)
    for host in ("::1", "::2", "::3"):
        assert browser(app, "2001:db8:1:1" + host).post("/v1/subjects").status_code == 201
    refused(browser(app, "2001:db8:1:1::ffff").post("/v1/subjects"), "new_subjects")
    assert browser(app, "2001:db8:1:2::1").post("/v1/subjects").status_code == 201
    keys = AddressKeys("k")
    assert keys("::ffff:192.0.2.1") == keys("192.0.2.1")


def test_a_first_consent_pays_for_its_new_subject(
    gateways: Gateways, redis_url: str, r: redis.Redis, snap: Callable[[redis.Redis], Snapshot]
) -> None:
    app = gateways(redis_url, **SLOW)
    for _ in range(3):
        assert consent(browser(app, "198.51.100.1"), personalization=True).status_code == 201
    before = snap(r)
    stranger = browser(app, "198.51.100.1")
    refused(consent(stranger, personalization=True), "new_subjects")
    assert snap(r) == before  # no subject, no ledger, nothing
    # a subject that has a ledger already does not pay again
    known = browser(app, "198.51.100.2")
    assert consent(known, personalization=True).status_code == 201
    known.environ_base["REMOTE_ADDR"] = "198.51.100.1"
    assert consent(known, advertising=True).status_code == 201


def test_ledger_writes_per_subject(
    gateways: Gateways, redis_url: str, r: redis.Redis, snap: Callable[[redis.Redis], Snapshot]
) -> None:
    app = gateways(redis_url, **SLOW)
    client = browser(app, "192.0.2.10")
    for purpose in ("personalization", "account_security", "personalization"):
        assert consent(client, **{purpose: True}).status_code == 201
    before = snap(r)
    refused(consent(client, advertising=True), "ledger_writes")
    refused(consent(client, advertising=False), "ledger_writes")  # withdraws nothing granted
    assert snap(r) == before
    sid = client.get("/v1/subject").get_json()["subject"]
    stamp = int(r.hget(K.consent(sid), "ls"))
    r.hset(K.consent(sid), "ls", stamp - 3_600_000)  # an hour passes: one token back
    assert consent(client, advertising=True).status_code == 201
    refused(consent(client, saved_login=False), "ledger_writes")
    assert client.get("/v1/consent/history").get_json()["length"] == 4
    # another subject is not held back by this one
    assert consent(browser(app, "192.0.2.11"), personalization=True).status_code == 201


def test_links_and_refusals_are_not_limited(gateways: Gateways, redis_url: str) -> None:
    """An unsubscribe or a GPC withdrawal must never be refused: each changes a state once."""
    app = gateways(redis_url, **SLOW)
    svc = app.extensions["gateway"]
    client = browser(app, "192.0.2.20")
    assert consent(client, advertising=True).status_code == 201
    assert consent(client, advertising=True, personalization=True).status_code == 201
    assert consent(client, advertising=True).status_code == 201
    refused(consent(client, advertising=True), "ledger_writes")
    sid = client.get("/v1/subject").get_json()["subject"]
    link = svc.mail.unsubscribe_token(sid, "email")
    assert client.post(f"/u/{link}").status_code == 200
    state = client.get("/v1/consent", headers={"Sec-GPC": "1"}).get_json()
    assert state["purposes"]["advertising"]["granted"] is False
    actions = [e["action"] for e in client.get("/v1/consent/history").get_json()["entries"]]
    assert actions[-2:] == ["unsubscribe:email", "withdraw"]


def test_events_per_subject(
    gateways: Gateways, redis_url: str, r: redis.Redis, snap: Callable[[redis.Redis], Snapshot]
) -> None:
    # one token every 0.5 s: the test's own requests (a snapshot of the store among them,
    # slow on a loaded cluster) have 0.4 s before a third token comes back, where a token
    # every 0.1 s left 50 ms and failed a run
    app = gateways(redis_url, **{**SMALL, "RATE_EVENTS_PER_HOUR": 7_200})
    client = browser(app, "192.0.2.30")
    grant(client, personalization=True)
    ok = client.post("/v1/events", json={"events": [page_view() for _ in range(5)]})
    assert ok.status_code == 202 and ok.get_json()["stored"] == 5
    before = snap(r)
    refused(client.post("/v1/events", json=page_view()), "events")
    pixel = client.get("/p.gif?type=page_view&url=https://shop.example.com/")
    assert pixel.status_code == 429 and pixel.mimetype == "image/gif"
    assert pixel.headers["X-Error-Code"] == "rate_limited" and "Retry-After" in pixel.headers
    assert snap(r) == before
    time.sleep(1.1)  # two tokens back: one event fits, three do not
    refused(client.post("/v1/events", json={"events": [page_view() for _ in range(3)]}), "events")
    assert client.post("/v1/events", json=page_view()).get_json()["stored"] == 1
    assert len(stream_events(r)) == 6


def test_an_app_batch_over_the_limit_is_refused_whole(gateways: Gateways, redis_url: str) -> None:
    app = gateways(redis_url, **SLOW)
    client = app.test_client()
    made = client.post("/v1/subjects").get_json()
    headers = {"X-Subject": made["token"]}
    consented = client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": {"personalization": True}, "source": "app"},
        headers=headers,
    )
    assert consented.status_code == 201
    batch = {
        "events": [
            {"event_id": f"app-{i:08d}", "type": "screen_view", "screen": "home"} for i in range(4)
        ]
    }
    assert client.post("/v1/batch", json=batch, headers=headers).get_json()["stored"] == 4
    more = {
        "events": [
            {"event_id": f"more-{i:08d}", "type": "screen_view", "screen": "home"} for i in range(2)
        ]
    }
    refused(client.post("/v1/batch", json=more, headers=headers), "events")


def test_buckets_are_shared_by_gateways_and_counted(gateways: Gateways, redis_url: str) -> None:
    one, two = gateways(redis_url, **SLOW), gateways(redis_url, **SLOW)
    for app in (one, two, one):
        assert browser(app, "192.0.2.40").post("/v1/subjects").status_code == 201
    refused(browser(two, "192.0.2.40").post("/v1/subjects"), "new_subjects")
    text = two.test_client().get("/metrics").get_data(as_text=True)
    assert 'gateway_rate_limited_total{limit="new_subjects"} 1.0' in text


def test_off_means_no_limit_and_no_bucket(
    gateways: Gateways, redis_url: str, r: redis.Redis
) -> None:
    for word in ("off", "false", "0"):
        assert from_env({"GATEWAY_RATE_LIMITS": word}) == {"RATE_LIMITS": False}
    assert from_env({"GATEWAY_RATE_LIMITS": "on"}) == {"RATE_LIMITS": True}
    app = gateways(redis_url, **(SLOW | from_env({"GATEWAY_RATE_LIMITS": "off"})))
    client = browser(app, "192.0.2.50")
    for _ in range(10):
        assert client.post("/v1/subjects").status_code == 201
        assert consent(browser(app, "192.0.2.50"), personalization=True).status_code == 201
    assert list(r.scan_iter("rl:*")) == []
    assert not any("lt" in r.hgetall(k) for k in r.scan_iter("*:s:*:consent"))


def test_an_events_bucket_smaller_than_a_request_is_refused_at_start(
    gateways: Gateways, redis_url: str
) -> None:
    with pytest.raises(ValueError, match="RATE_EVENTS_BURST"):
        gateways(redis_url, RATE_EVENTS_BURST=100)  # batches hold 500


def test_buckets_cost_no_memory_of_their_own_per_subject(
    gateways: Gateways, redis_url: str, r: redis.Redis
) -> None:
    """The per-subject buckets live in the consent hash: no key per subject and limit."""
    app = gateways(redis_url, **SMALL)
    client = browser(app, "192.0.2.60")
    grant(client, personalization=True)
    client.post("/v1/events", json=page_view())
    sid = client.get("/v1/subject").get_json()["subject"]
    state = r.hgetall(K.consent(sid))
    assert {"lt", "ls", "et", "es"} <= set(state)
    # (attempts: the event write's, kept an hour to answer a resend; not a bucket's)
    assert sorted(k for k in r.scan_iter("*") if sid in k) == sorted(
        K.subject(sid, kind) for kind in ("consent", "dedup", "index", "ledger", "attempts")
    )
    assert json.loads(r.lindex(K.ledger(sid), 0))["subject"] == sid


def test_withdrawing_is_never_refused(gateways: Gateways, redis_url: str, r: redis.Redis) -> None:
    """Withdrawing stays as easy as granting: a write that takes back something granted passes
    an empty bucket; one that changes nothing, or grants, does not."""
    app = gateways(redis_url, **SLOW)
    client = browser(app, "192.0.2.70")
    assert consent(client, advertising=True, personalization=True).status_code == 201
    for _ in range(2):
        assert consent(client, advertising=True).status_code == 201
    refused(consent(client, advertising=True), "ledger_writes")
    assert client.delete("/v1/consent").status_code == 200  # takes everything back
    state = client.get("/v1/consent").get_json()["purposes"]
    assert not state["advertising"]["granted"] and not state["personalization"]["granted"]
    refused(client.delete("/v1/consent"), "ledger_writes")  # withdraws nothing now
    refused(consent(client, personalization=True), "ledger_writes")


def test_consent_writes_per_address(gateways: Gateways, redis_url: str) -> None:
    """Without a per-address bucket an address writes its new subjects' allowance times their
    number; with it, a few consent writes a second in all."""
    app = gateways(
        redis_url, **(SLOW | {"RATE_ADDRESS_LEDGER_BURST": 4, "RATE_NEW_SUBJECTS_BURST": 10})
    )
    for _ in range(2):
        client = browser(app, "198.51.100.9")
        assert consent(client, personalization=True).status_code == 201
        assert consent(client, advertising=True).status_code == 201
    late = browser(app, "198.51.100.9")
    refused(consent(late, personalization=True), "address_ledger_writes")
    assert consent(browser(app, "198.51.100.10"), personalization=True).status_code == 201
