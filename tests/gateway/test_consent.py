"""The consent API: deny by default, versions, re-consent, ledger, receipts, cross-site refusal."""

from __future__ import annotations

import pytest
import redis
from flask.testing import FlaskClient

from gateway.core.tokens import CONSENT_COOKIE, VID_COOKIE

from ..conftest import KEYS, ORIGIN
from ..helpers import CURRENT, ORIGINAL, data_keys, grant


def test_policy_shows_versions_and_changes(client: FlaskClient) -> None:
    doc = client.get("/v1/policy").get_json()
    assert doc["version"] == CURRENT
    assert doc["history"][0] == {
        **doc["history"][0],
        "version": CURRENT,
        "changed": ["personalization"],
    }
    assert doc["history"][1]["version"] == ORIGINAL
    assert set(doc["purposes"]) == {
        "necessary",
        "account_security",
        "precise_location",
        "saved_login",
        "personalization",
        "advertising",
    }


def test_deny_by_default(client: FlaskClient) -> None:
    state = client.get("/v1/consent").get_json()
    assert state["recorded"] is False
    assert state["purposes"]["necessary"]["granted"] is True
    assert not any(v["granted"] for k, v in state["purposes"].items() if k != "necessary")
    assert state["needs_reconsent"] == []


def test_grant_sets_cookies_and_returns_receipt(client: FlaskClient) -> None:
    body = grant(client, personalization=True)
    assert body["state"]["purposes"]["personalization"]["granted"] is True
    assert body["state"]["purposes"]["advertising"]["granted"] is False  # not mentioned: refused
    receipt = body["receipt"]
    assert {"id", "time", "policy_version", "purposes", "hash", "jws", "entry_id"} <= set(receipt)
    assert receipt["policy_version"] == CURRENT
    assert receipt["purposes"] == {"necessary": True, "personalization": True}
    assert client.get_cookie(VID_COOKIE) is not None
    vid = client.get_cookie(VID_COOKIE)
    assert vid.http_only and vid.max_age == 395 * 86400  # type: ignore[union-attr]
    consent = client.get_cookie(CONSENT_COOKIE)
    assert consent is not None and not consent.http_only
    # the same subject keeps answering
    assert client.get("/v1/consent").get_json()["purposes"]["personalization"]["granted"] is True


def test_secure_cookie_flag_outside_development(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway import create_app

    from ..conftest import make_config

    app = create_app(make_config(redis_url, tmp_path, COOKIE_SECURE=True))
    c = app.test_client()
    resp = c.post("/v1/consent", json={"policy_version": CURRENT, "purposes": {}})
    cookies = resp.headers.getlist("Set-Cookie")
    assert all("Secure" in h and "SameSite=Lax" in h for h in cookies)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"policy_version": CURRENT, "purposes": {"biometrics": True, "faces": False}}, "purposes"),
        ({"policy_version": "1999-01-01", "purposes": {}}, "policy_version"),
        ({"policy_version": CURRENT, "purposes": {"necessary": False}}, "purposes"),
        ({"policy_version": CURRENT, "purposes": {"advertising": "yes please"}}, "purposes"),
        ({"policy_version": CURRENT, "purposes": {}, "extra": 1}, "extra"),
        ({"purposes": {}}, "policy_version"),
    ],
)
def test_bad_consent_is_refused_and_records_nothing(
    client: FlaskClient, r: redis.Redis, body: dict, field: str
) -> None:
    resp = client.post("/v1/consent", json=body)
    assert resp.status_code == 400
    err = resp.get_json()["error"]
    assert err["code"] == "validation_failed" and field in err["fields"]
    assert data_keys(r) == []


def test_unknown_purposes_are_named(client: FlaskClient) -> None:
    resp = client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": {"biometrics": True, "faces": True}},
    )
    assert "biometrics" in resp.get_json()["error"]["fields"]["purposes"][0]
    assert "faces" in resp.get_json()["error"]["fields"]["purposes"][0]


def test_reconsent_after_policy_change(client: FlaskClient) -> None:
    body = grant(
        client, version=ORIGINAL, personalization=True, account_security=True, advertising=False
    )
    state = body["state"]
    # personalisation changed in the current version: the old grant no longer counts
    assert state["purposes"]["personalization"]["granted"] is False
    assert state["purposes"]["personalization"]["stale"] is True
    assert state["purposes"]["account_security"]["granted"] is True
    assert state["needs_reconsent"] == ["personalization"]
    body = grant(client, personalization=True)
    assert body["state"]["needs_reconsent"] == []
    assert body["state"]["purposes"]["personalization"]["granted"] is True
    assert body["state"]["purposes"]["account_security"]["granted"] is True  # kept


def test_withdraw_is_one_call(client: FlaskClient) -> None:
    grant(client, personalization=True, advertising=True, account_security=True)
    resp = client.delete("/v1/consent")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["receipt"]["action"] == "withdraw"
    granted = [k for k, v in body["state"]["purposes"].items() if v["granted"]]
    assert granted == ["necessary"]
    assert client.get("/v1/consent").get_json()["purposes"]["advertising"]["granted"] is False


def test_cross_site_consent_is_refused(client: FlaskClient, r: redis.Redis) -> None:
    body = {"policy_version": CURRENT, "purposes": {"advertising": True}}
    evil = client.post("/v1/consent", json=body, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert evil.get_json()["error"]["code"] == "cross_site_refused"
    fetch = client.post("/v1/consent", json=body, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetch.status_code == 403
    null = client.post("/v1/consent", json=body, headers={"Origin": "null"})
    assert null.status_code == 403
    assert (
        client.delete("/v1/consent", headers={"Origin": "https://evil.example"}).status_code == 403
    )
    assert data_keys(r) == []
    assert "Set-Cookie" not in evil.headers

    ok = client.post(
        "/v1/consent", json=body, headers={"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"}
    )
    assert ok.status_code == 201
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert ok.headers["Access-Control-Allow-Credentials"] == "true"
    own = client.post("/v1/consent", json=body, headers={"Origin": "http://localhost"})
    assert own.status_code == 201  # the gateway's own origin


def test_cors_preflight_names_exact_origins(client: FlaskClient) -> None:
    ok = client.options(
        "/v1/consent", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Subject" in ok.headers["Access-Control-Allow-Headers"]
    evil = client.options("/v1/consent", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in evil.headers
    assert all(v != "*" for v in ok.headers.values())


def test_forged_vid_gets_a_new_subject(client: FlaskClient) -> None:
    grant(client, personalization=True)
    real = client.get_cookie(VID_COOKIE).value  # type: ignore[union-attr]
    sid = real.split(".")[0]
    client.set_cookie(VID_COOKIE, "f" * 32 + real[32:])
    state = client.get("/v1/consent").get_json()
    assert state["recorded"] is False  # the forged id is nobody
    new = client.get_cookie(VID_COOKIE).value  # type: ignore[union-attr]
    assert new != real and not new.startswith("f" * 32) and not new.startswith(sid)


def test_old_key_cookies_still_work_after_rotation(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway import create_app

    from ..conftest import make_config

    old = create_app(make_config(redis_url, tmp_path, SECRET_KEYS=[KEYS[1]])).test_client()
    grant(old, personalization=True)
    cookie = old.get_cookie(VID_COOKIE).value  # type: ignore[union-attr]
    rotated = create_app(make_config(redis_url, tmp_path, SECRET_KEYS=KEYS)).test_client()
    rotated.set_cookie(VID_COOKIE, cookie)
    assert rotated.get("/v1/consent").get_json()["purposes"]["personalization"]["granted"] is True
    renewed = rotated.get_cookie(VID_COOKIE).value  # type: ignore[union-attr]
    assert renewed.split(".")[0] == cookie.split(".")[0] and renewed != cookie  # re-signed, new key
    retired = create_app(make_config(redis_url, tmp_path, SECRET_KEYS=[KEYS[0]])).test_client()
    retired.set_cookie(VID_COOKIE, cookie)
    assert retired.get("/v1/consent").get_json()["recorded"] is False


def test_app_subject_header(client: FlaskClient, app) -> None:  # type: ignore[no-untyped-def]
    tokens = app.extensions["gateway"].tokens
    token = tokens.sign_subject("a" * 32)
    resp = client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": {"advertising": True}, "source": "app"},
        headers={"X-Subject": token},
    )
    assert resp.status_code == 201
    assert resp.get_json()["receipt"]["subject"] == "a" * 32
    assert "Set-Cookie" not in resp.headers
    bad = client.get("/v1/consent", headers={"X-Subject": "a" * 32 + ".forged"})
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_subject"


# Global Privacy Control: Sec-GPC: 1 is a standing refusal of advertising.
GPC = {"Sec-GPC": "1"}


def _sources(client: FlaskClient) -> list[tuple[str, bool]]:
    entries = client.get("/v1/consent/history").get_json()["entries"]
    return [(e["source"], e["purposes"].get("advertising")) for e in entries]


def test_gpc_refuses_advertising_in_a_consent(client: FlaskClient) -> None:
    resp = client.post(
        "/v1/consent",
        json={
            "policy_version": CURRENT,
            "purposes": {"advertising": True, "personalization": True},
            "source": "banner",
        },
        headers=GPC,
    )
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["state"]["gpc"] is True
    assert body["state"]["purposes"]["advertising"]["granted"] is False
    assert body["state"]["purposes"]["personalization"]["granted"] is True
    assert body["receipt"]["purposes"]["advertising"] is False  # what the ledger holds


def test_gpc_withdraws_an_earlier_grant_once_on_the_ledger(client: FlaskClient) -> None:
    grant(client, advertising=True, personalization=True)
    assert client.get("/v1/consent").get_json()["gpc"] is False
    for _ in range(3):
        state = client.get("/v1/consent", headers=GPC).get_json()
        assert state["gpc"] is True and state["purposes"]["advertising"]["granted"] is False
        assert state["purposes"]["personalization"]["granted"] is True
    assert _sources(client) == [("banner", True), ("gpc", False)]  # recorded once


def test_gpc_on_a_beacon_or_event_withdraws_advertising_once(client: FlaskClient) -> None:
    grant(client, advertising=True, personalization=True)
    assert client.get("/p.gif", headers=GPC).status_code == 200
    body = client.post(
        "/v1/events",
        json={"event_id": "gpc-event-01", "type": "search", "keyword": "轴承"},
        headers=GPC,
    ).get_json()
    assert body["stored"] == 1  # personalization still counts
    assert _sources(client) == [("banner", True), ("gpc", False)]
    assert client.get("/v1/consent").get_json()["purposes"]["advertising"]["granted"] is False


def test_a_sensitive_purpose_is_granted_only_on_its_own(
    client: FlaskClient, r: redis.Redis, snap
) -> None:
    """PIPL art. 29: precise location (sensitive) needs a separate consent, so a request that
    grants it must decide it alone; refusing it with the rest stays one click."""
    before = snap(r)
    together = client.post(
        "/v1/consent",
        json={
            "policy_version": CURRENT,
            "purposes": {"precise_location": True, "personalization": True},
            "source": "banner",
        },
    )
    assert together.status_code == 400
    error = together.get_json()["error"]
    assert error["code"] == "separate_consent_required"
    assert (
        "precise_location" in error["message"] and "precise_location" in error["fields"]["purposes"]
    )
    assert snap(r) == before and client.get_cookie(VID_COOKIE) is None  # nothing recorded
    refused_all = dict.fromkeys(
        ("precise_location", "personalization", "advertising", "account_security"), False
    )
    assert grant(client, **refused_all)["receipt"]["purposes"]["precise_location"] is False
    alone = client.post(
        "/v1/consent",
        json={
            "policy_version": CURRENT,
            "purposes": {"necessary": True, "precise_location": True},
            "source": "settings",
        },
    )
    assert alone.status_code == 201
    assert alone.get_json()["state"]["purposes"]["precise_location"]["granted"] is True


def test_a_navigation_from_another_site_writes_no_gpc_withdrawal(client: FlaskClient) -> None:
    """GET /v1/consent honours GPC by writing a withdrawal; another site's navigation (which
    carries the SameSite=Lax cookie) must not write into the visitor's ledger."""
    grant(client, advertising=True)
    cross = {"Sec-GPC": "1", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    state = client.get("/v1/consent", headers=cross).get_json()
    assert state["gpc"] is True
    assert client.get("/v1/consent/history").get_json()["length"] == 1  # nothing written
    own = client.get("/v1/consent", headers={"Sec-GPC": "1", "Sec-Fetch-Site": "same-origin"})
    assert own.get_json()["purposes"]["advertising"]["granted"] is False
    entries = client.get("/v1/consent/history").get_json()["entries"]
    assert [(e["source"], e["action"]) for e in entries] == [
        ("banner", "consent"),
        ("gpc", "withdraw"),
    ]
