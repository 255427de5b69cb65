"""GET /v1/subject returns everything held about the caller, in its types (clause 6)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from redis.cluster import RedisCluster

from ..helpers import CHROME, event, grant, page_view

pytestmark = pytest.mark.stores  # run on the embedded Valkey, Redis 7.0 and a cluster


def test_nobody_has_nothing(client: FlaskClient) -> None:
    body = client.get("/v1/subject").get_json()
    assert body["subject"] is None and body["events"] == {} and body["ledger"] == []


def test_everything_about_the_subject_and_nobody_else(
    client: FlaskClient, app, r: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    grant(client, personalization=True, account_security=True, precise_location=True)
    ev = event(
        "cart",
        action="add",
        product="螺丝",
        quantity=2,
        price=9.5,
        gps={"lat": 30.5, "lon": 114.3, "accuracy": 5},
    )
    client.post("/v1/events", json=ev, headers={"User-Agent": CHROME})

    other = app.test_client()
    grant(other, personalization=True)
    other.post("/v1/events", json=page_view())

    body = client.get("/v1/subject").get_json()
    assert body["ledger_intact"] is True and len(body["ledger"]) == 2  # location alone
    assert body["consent"]["purposes"]["precise_location"]["granted"] is True
    assert set(body["events"]) == {"personalization", "account_security", "precise_location"}
    perso = body["events"]["personalization"][0]
    assert perso["quantity"] == 2 and perso["price"] == 9.5 and perso["product"] == "螺丝"
    assert body["events"]["precise_location"][0]["gps"] == {
        "lat": 30.5,
        "lon": 114.3,
        "accuracy": 5,
    }
    assert body["events"]["account_security"][0]["is_bot"] is False
    everything = str(body)
    other_sid = other.get("/v1/subject").get_json()["subject"]
    assert other_sid not in everything and body["subject"] != other_sid


def _pages(client: FlaskClient, limit: int) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        resp = client.get("/v1/subject" + query)
        assert resp.status_code == 200, resp.get_json()
        pages.append(resp.get_json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages


def test_pages_hold_every_part_and_entry_once(client: FlaskClient) -> None:
    grant(client, personalization=True)
    sent = []
    for size in (5, 1, 4):  # stream entries of 5, 1 and 4 parts: pages cut through them
        batch = [page_view(title=f"t{len(sent) + i}") for i in range(size)]
        sent += [e["event_id"] for e in batch]
        client.post("/v1/events", json={"events": batch})
    grant(client, personalization=True)
    pages = _pages(client, limit=3)
    got = [e["event_id"] for p in pages for e in p["events"].get("personalization", [])]
    assert got == sent  # oldest first, none twice, none lost
    assert all(len(p["events"].get("personalization", [])) <= 3 for p in pages)
    receipts = [e["entry_id"] for p in pages for e in p["ledger"]]
    assert receipts == ["1", "2"] and len(pages) == 4
    assert all(p["ledger_intact"] and p["ledger_length"] == 2 for p in pages)
    assert pages[0]["held"]["remembered_event_ids"] == 10
    assert _pages(client, limit=1000)[0]["next_cursor"] is None


def test_trimmed_entries_are_skipped(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    client.post("/v1/events", json={"events": [page_view() for _ in range(5)]})
    for key in r.scan_iter("*:ev:*"):
        r.xtrim(key, maxlen=0)  # as retention would
    body = client.get("/v1/subject").get_json()
    assert body["events"] == {} and body["next_cursor"] is None


def test_a_bad_cursor_is_refused(client: FlaskClient) -> None:
    grant(client, personalization=True)
    for cursor in ("1", "a.b.c", "1.2.3.4", "-1.0.0"):
        resp = client.get(f"/v1/subject?cursor={cursor}")
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_cursor"


def test_everything_held_is_shown(client: FlaskClient, app: Flask) -> None:
    """Saved logins, SMS codes and suppression-list places are held about the subject too."""
    svc = app.extensions["gateway"]
    grant(client, saved_login=True, advertising=True)
    sid = client.get("/v1/subject").get_json()["subject"]
    svc.logins.issue("buyer-1001", sid, 3600)
    code = svc.sms.new_code(sid, "13800138000")
    client.post(f"/u/{code}")  # leaves SMS advertising from the link
    held = client.get("/v1/subject").get_json()["held"]
    assert [login["account"] for login in held["saved_logins"]] == ["buyer-1001"]
    assert code in str(held["sms"])
    assert held["suppressed"]["sms"] is not None and held["suppressed"]["email"] is None


def test_a_small_page_reads_little_from_the_store(client: FlaskClient, r: redis.Redis) -> None:
    """Stream entries hold whole batches: a page of 10 parts must not read 1,000 entries."""
    grant(client, personalization=True)
    for _ in range(30):
        client.post("/v1/events", json={"events": [page_view() for _ in range(50)]})
    every = {"target_nodes": RedisCluster.PRIMARIES} if isinstance(r, RedisCluster) else {}
    r.config_resetstat(**every)
    body = client.get("/v1/subject?limit=10").get_json()
    assert sum(len(v) for v in body["events"].values()) == 10 and body["next_cursor"]
    stats = r.info("commandstats", **every)
    per_server = stats.values() if every else [stats]  # a cluster answers per master
    calls = sum(s.get("cmdstat_xrange", {}).get("calls", 0) for s in per_server)
    assert 1 <= calls <= 4  # one read-ahead at most
