"""Collection: only consented fields are stored, at the moment of the event; dedup; the pixel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from gateway import create_app
from gateway.core.tokens import CONSENT_COOKIE, VID_COOKIE
from gateway.web.collect import GIF

from ..conftest import ORIGIN, make_config
from ..helpers import CHROME, ORIGINAL, data_keys, event, grant, page_view, stream_events


def stored(r: redis.Redis, purpose: str) -> list[dict[str, str]]:
    return [event for _, _, event in stream_events(r, purpose)]


def all_event_keys(r: redis.Redis) -> list[str]:
    return sorted(r.scan_iter("*:ev:*"))


def post(client: FlaskClient, *events: dict[str, Any], **kw: Any) -> Any:
    return client.post("/v1/events", json={"events": list(events)}, **kw)


def test_no_consent_stores_nothing(client: FlaskClient, r: redis.Redis) -> None:
    resp = post(client, page_view(), event("search", keyword="螺丝"))
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["stored"] == 0 and body["accepted"] == 2
    assert body["dropped_fields"] == {"url": 1, "title": 1, "keyword": 1}
    assert data_keys(r) == []
    assert "Set-Cookie" not in resp.headers  # no id is handed out for data that is not kept


def test_personalization_only(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    ev = page_view(gps={"lat": 31.23, "lon": 121.47, "accuracy": 10})
    resp = post(client, ev, headers={"User-Agent": CHROME})
    body = resp.get_json()
    assert resp.status_code == 202 and body["stored"] == 1
    assert body["stored_fields"] == {"url": 1, "title": 1}
    assert body["dropped_fields"]["gps"] == 1
    rows = stored(r, "personalization")
    assert len(rows) == 1
    row = rows[0]
    assert row["url"] == ev["url"] and row["title"] == ev["title"]
    assert row["event_id"] == ev["event_id"] and row["type"] == "page_view"
    assert "ip" not in row and "gps" not in row and "browser" not in row
    assert {k.rsplit(":", 1)[1] for k in all_event_keys(r)} == {"personalization"}


def test_all_consented_stores_every_part_in_its_purpose(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True, account_security=True, precise_location=True)
    ev = event(
        "cart",
        action="add",
        product="螺丝",
        model="M3x10",
        quantity=3,
        price=1.5,
        gps={"lat": 31.23, "lon": 121.47},
    )
    body = post(client, ev, headers={"User-Agent": CHROME}).get_json()
    assert body["stored"] == 1 and body["dropped_fields"] == {}
    perso = stored(r, "personalization")[0]
    assert (perso["product"], perso["quantity"], perso["price"]) == ("螺丝", 3, 1.5)
    sec = stored(r, "account_security")[0]
    assert sec["ip"] == "127.0.0.1" and sec["browser"] == "Chrome" and sec["os"] == "Windows"
    assert sec["is_bot"] is False
    assert "product" not in sec and "user_agent" not in sec
    assert stored(r, "precise_location")[0]["gps"] == {"lat": 31.23, "lon": 121.47}


def test_design_usage_is_account_security(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    body = post(client, event("design_usage", software="CAD", product="P1", model="M1")).get_json()
    assert body["stored"] == 0
    assert body["dropped_fields"] == {"software": 1, "product": 1, "model": 1}
    assert all_event_keys(r) == []


def test_withdrawal_applies_to_the_next_event(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    post(client, page_view())
    withdrawn = client.delete("/v1/consent").get_json()
    assert withdrawn["deleted"]["personalization"] == 1  # what was kept under it goes too
    body = post(client, page_view()).get_json()
    assert body["stored"] == 0
    assert stored(r, "personalization") == []


def test_stale_consent_stores_nothing_for_changed_purpose(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, version=ORIGINAL, personalization=True, account_security=True)
    body = post(client, page_view(), headers={"User-Agent": CHROME}).get_json()
    assert "url" in body["dropped_fields"]
    assert stored(r, "personalization") == []
    assert len(stored(r, "account_security")) == 1


def test_dedup_by_event_id(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    ev = page_view()
    first = post(client, ev).get_json()
    again = post(client, ev, page_view()).get_json()
    twice_in_one = post(client, (same := page_view()), same).get_json()
    assert first["stored"] == 1
    assert again["duplicates"] == 1 and again["stored"] == 1
    assert twice_in_one["duplicates"] == 1 and twice_in_one["stored"] == 1
    assert len(stored(r, "personalization")) == 3
    ttl = r.pttl(next(iter(r.scan_iter("*:s:*:dedup"))))
    assert 23 * 3600 * 1000 < ttl <= 24 * 3600 * 1000  # a window past the last write


def test_text_plain_and_single_event(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    resp = client.post(
        "/v1/events", data=json.dumps(page_view()), content_type="text/plain;charset=UTF-8"
    )
    assert resp.status_code == 202 and resp.get_json()["stored"] == 1
    assert len(stored(r, "personalization")) == 1


def test_forged_vid_is_never_attached_to_data(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    real = client.get_cookie(VID_COOKIE).value  # type: ignore[union-attr]
    victim = real.split(".")[0]
    forged = "0" * 32 + real[32:]
    client.set_cookie(VID_COOKIE, forged)
    resp = post(client, page_view())
    assert resp.get_json()["stored"] == 0
    assert all_event_keys(r) == []
    new = client.get_cookie(VID_COOKIE).value  # type: ignore[union-attr]
    assert not new.startswith("0" * 32) and not new.startswith(victim)
    assert not any((":s:" + "0" * 32) in k for k in data_keys(r))


def test_pixel(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    resp = client.get("/p.gif?type=search&keyword=%E8%9E%BA%E4%B8%9D&event_id=pixel-0001")
    assert resp.status_code == 200 and resp.data == GIF and len(resp.data) == 43
    assert resp.mimetype == "image/gif"
    assert resp.headers["Cache-Control"] == "no-store, no-cache, must-revalidate, max-age=0"
    # noscript page view: the URL comes from the Referer
    client.get("/p.gif", headers={"Referer": "https://shop.example.com/item/9"})
    client.get("/p.gif?type=search&keyword=%E8%9E%BA%E4%B8%9D&event_id=pixel-0001")  # duplicate
    rows = stored(r, "personalization")
    assert [row.get("keyword") for row in rows] == ["螺丝", None]
    assert rows[1]["url"] == "https://shop.example.com/item/9" and rows[1]["type"] == "page_view"
    bad = client.get("/p.gif?type=cart&quantity=lots")
    assert bad.status_code == 400 and bad.data == GIF
    assert bad.headers["X-Error-Code"] == "validation_failed"
    assert len(stored(r, "personalization")) == 2


def test_events_from_another_site_are_refused(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    evil = post(client, page_view(), headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    ok = post(client, page_view(), headers={"Origin": ORIGIN})
    assert ok.status_code == 202 and ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert len(stored(r, "personalization")) == 1


def test_client_ip_only_from_trusted_proxies(
    redis_url: str, tmp_path: Path, r: redis.Redis
) -> None:
    direct = create_app(make_config(redis_url, tmp_path)).test_client()
    grant(direct, account_security=True)
    post(direct, page_view(), headers={"X-Forwarded-For": "223.5.5.5"})
    assert stored(r, "account_security")[0]["ip"] == "127.0.0.1"  # spoofed header ignored

    r.flushall()
    proxied = create_app(make_config(redis_url, tmp_path, TRUSTED_PROXIES=1)).test_client()
    grant(proxied, account_security=True, personalization=True)
    post(proxied, page_view(), headers={"X-Forwarded-For": "10.9.9.9, 223.5.5.5"})
    sec = stored(r, "account_security")[0]
    assert sec["ip"] == "223.5.5.5"  # one hop trusted: the address nginx saw
    perso = stored(r, "personalization")[0]
    assert perso["country"] == "中国"  # the real GeoLite2 database, Chinese names


def test_no_geoip_lookup_without_personalization(
    redis_url: str, tmp_path: Path, r: redis.Redis
) -> None:
    app = create_app(make_config(redis_url, tmp_path, TRUSTED_PROXIES=1))
    client = app.test_client()
    grant(client, account_security=True)
    geo = app.extensions["gateway"].enricher.geo
    calls: list[str] = []
    real = geo.lookup
    geo.lookup = lambda ip: calls.append(ip) or real(ip)  # type: ignore[method-assign]
    post(client, page_view(), headers={"X-Forwarded-For": "223.5.5.5"})
    assert calls == []
    assert "country" not in stored(r, "account_security")[0]


def test_metrics_count_drops_by_field(client: FlaskClient) -> None:
    grant(client, personalization=True)
    post(client, page_view(gps={"lat": 1, "lon": 2}))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gateway_fields_dropped_total{field="gps",purpose="precise_location"} 1.0' in text
    assert 'gateway_fields_stored_total{field="url",purpose="personalization"} 1.0' in text
    assert 'gateway_events_stored_total{purpose="personalization"} 1.0' in text
    assert (
        'gateway_requests_total{endpoint="collect.post_events",method="POST",status="202"}' in text
    )
    assert "31.0" not in text  # values never reach metrics


# The _consent cookie is only a hint of what to prepare: the ledger decides.


def _consent_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(CONSENT_COOKIE)
    assert cookie is not None
    return cookie.value


def test_an_old_consent_cookie_claiming_more_stores_only_what_the_ledger_grants(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True, account_security=True, precise_location=True)
    claims_all = _consent_cookie(client)
    grant(client, personalization=True, account_security=False, precise_location=False)
    client.set_cookie(CONSENT_COOKIE, claims_all)
    ev = page_view(gps={"lat": 31.23, "lon": 121.47})
    resp = post(client, ev, headers={"User-Agent": CHROME})
    body = resp.get_json()
    assert resp.status_code == 202 and body["stored"] == 1
    assert body["stored_fields"] == {"url": 1, "title": 1}
    assert body["dropped_fields"] == {"gps": 1}  # IP and browser were not even derived
    assert stored(r, "account_security") == [] and stored(r, "precise_location") == []
    assert "ip" not in stored(r, "personalization")[0]
    # The answer carries a cookie that matches the ledger again.
    fresh = _consent_cookie(client)
    assert fresh != claims_all
    assert client.application.extensions["gateway"].tokens.read_consent(fresh)["p"] == [
        "necessary",
        "personalization",
    ]


def test_an_old_consent_cookie_claiming_less_still_stores_what_the_ledger_grants(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True)
    claims_less = _consent_cookie(client)
    grant(client, personalization=True, account_security=True)
    client.set_cookie(CONSENT_COOKIE, claims_less)
    body = post(client, page_view(), headers={"User-Agent": CHROME}).get_json()
    assert body["stored_fields"]["ip"] == 1 and body["stored_fields"]["url"] == 1
    assert len(stored(r, "account_security")) == 1


def test_pixel_with_a_stale_consent_cookie_after_withdrawal_stores_nothing(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True, account_security=True)
    claims = _consent_cookie(client)
    client.delete("/v1/consent")
    client.set_cookie(CONSENT_COOKIE, claims)
    resp = client.get(
        "/p.gif?url=https%3A%2F%2Fshop.example.com%2F", headers={"User-Agent": CHROME}
    )
    assert resp.status_code == 200 and resp.data == GIF
    assert all_event_keys(r) == []


def test_another_subjects_consent_cookie_is_not_taken_for_this_ones(
    app: Any, r: redis.Redis
) -> None:
    a, b = app.test_client(), app.test_client()
    grant(a, personalization=True, account_security=True)
    grant(b, personalization=True, account_security=False)
    b.set_cookie(CONSENT_COOKIE, _consent_cookie(a))
    body = post(b, page_view(), headers={"User-Agent": CHROME}).get_json()
    assert body["stored_fields"] == {"url": 1, "title": 1}
    assert stored(r, "account_security") == []


def test_forged_or_garbage_consent_cookie_falls_back_to_the_ledger(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True)
    genuine = _consent_cookie(client)
    payload, _, sig = genuine.rpartition(".")
    for bad in ("garbage", payload + "." + sig[:-4] + "AAAA", ""):
        client.set_cookie(CONSENT_COOKIE, bad)
        body = post(client, page_view(), headers={"User-Agent": CHROME}).get_json()
        assert body["stored"] == 1 and body["stored_fields"] == {"url": 1, "title": 1}
    assert len(stored(r, "personalization")) == 3 and stored(r, "account_security") == []


def test_pixel_ids_minted_by_the_gateway_skip_dedup_and_client_ids_do_not(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True)
    for _ in range(2):
        assert client.get("/p.gif?url=https%3A%2F%2Fshop.example.com%2F").status_code == 200
    assert len(stored(r, "personalization")) == 2
    assert list(r.scan_iter("*:s:*:dedup")) == []  # a fresh random id cannot be a retry
    assert len(list(r.scan_iter("*:s:*:index"))) == 1  # but access still finds them
    for _ in range(2):
        resp = client.get("/p.gif?event_id=client-made-1&url=https%3A%2F%2Fshop.example.com%2F")
        assert resp.status_code == 200
    assert len(stored(r, "personalization")) == 3
    assert r.zcard(next(iter(r.scan_iter("*:s:*:dedup")))) == 1
    assert r.zcard(next(iter(r.scan_iter("*:s:*:attempts")))) == 1  # the write that stored it


def test_a_stale_hint_with_nothing_to_store_is_checked_against_the_ledger(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, advertising=True)  # a purpose with no event fields
    claims_advertising_only = _consent_cookie(client)
    grant(client, personalization=True)
    client.set_cookie(CONSENT_COOKIE, claims_advertising_only)
    body = post(client, page_view()).get_json()
    assert body["stored"] == 1 and body["stored_fields"] == {"url": 1, "title": 1}
    assert _consent_cookie(client) != claims_advertising_only  # refreshed


def test_gpc_reads_the_ledger_not_a_stale_cookie(client: FlaskClient) -> None:
    grant(client, personalization=True)
    claims_no_advertising = _consent_cookie(client)
    grant(client, advertising=True)
    client.set_cookie(CONSENT_COOKIE, claims_no_advertising)
    post(client, page_view(), headers={"Sec-GPC": "1"})
    state = client.get("/v1/consent").get_json()
    assert state["purposes"]["advertising"]["granted"] is False


def test_an_answer_that_stores_less_than_was_sent_says_why(
    client: FlaskClient,
    app,
    r: redis.Redis,  # type: ignore[no-untyped-def]
) -> None:
    """``reason``: no_subject, not_consented, partly_consented; absent when all was kept."""
    nobody = post(client, page_view()).get_json()
    assert nobody["stored"] == 0 and nobody["reason"] == "no_subject"
    pixel = client.get("/p.gif?type=page_view&url=https://shop.example.com/")
    assert pixel.status_code == 200 and pixel.headers["X-Reason"] == "no_subject"

    grant(client, advertising=True)  # nothing a page view serves
    refused = post(client, page_view()).get_json()
    assert refused["stored"] == 0 and refused["reason"] == "not_consented"

    grant(client, personalization=True)
    located = page_view(gps={"lat": 31.2, "lon": 121.5})
    some = post(client, located, headers={"User-Agent": CHROME}).get_json()
    assert some["stored"] == 1 and some["reason"] == "partly_consented"
    assert some["dropped_fields"] == {"gps": 1}  # precise_location is not granted

    grant(client, personalization=True, account_security=True)
    again = page_view()
    whole = post(client, again, headers={"User-Agent": CHROME}).get_json()
    assert whole["stored"] == 1 and "reason" not in whole
    resent = post(client, again, headers={"User-Agent": CHROME}).get_json()
    assert resent["duplicates"] == 1 and "reason" not in resent  # kept before: nothing lost
    ok = client.get("/p.gif?type=page_view&url=https://shop.example.com/")
    assert "X-Reason" not in ok.headers


@pytest.mark.parametrize("type_", ["search", "drawing_download", "cart", "quote"])
def test_a_products_category_is_kept_for_personalization_only(
    client: FlaskClient, r: redis.Redis, type_: str
) -> None:
    """Clause 3(2) item 1 counts "customers buying a category": the product events carry the
    platform's category code, a personalization field like the product it describes."""
    grant(client, personalization=True, account_security=True)
    ev = event(type_, product="内六角螺钉 M3", category="FAST-0102")
    assert client.post("/v1/events", json=ev).get_json()["stored"] == 1
    parts = {purpose: part for _, purpose, part in stream_events(r)}
    assert parts["personalization"]["category"] == "FAST-0102"
    assert "category" not in parts["account_security"]  # its part holds the request's context
    too_long = event(type_, category="x" * 33)
    assert client.post("/v1/events", json=too_long).status_code == 400
    elsewhere = event("page_view", category="FAST-0102")  # not a field of a page view
    assert client.post("/v1/events", json=elsewhere).status_code == 400
