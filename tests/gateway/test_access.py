"""GET /v1/subject returns everything held about the caller, in its types (clause 6)."""

from __future__ import annotations

import redis
from flask.testing import FlaskClient

from ..helpers import CHROME, event, grant, page_view


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
    assert body["ledger_intact"] is True and len(body["ledger"]) == 1
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


def test_trimmed_entries_are_skipped_and_limit_truncates(
    client: FlaskClient, app, r: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    grant(client, personalization=True)
    client.post("/v1/events", json={"events": [page_view() for _ in range(5)]})
    app.extensions["gateway"].config["ACCESS_LIMIT"] = 3
    body = client.get("/v1/subject").get_json()
    assert body["truncated"] is True and len(body["events"]["personalization"]) == 3
    for key in r.scan_iter("ev:*"):
        r.xtrim(key, maxlen=0)  # as retention would
    body = client.get("/v1/subject").get_json()
    assert body["events"] == {}
