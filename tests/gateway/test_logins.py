"""Saved login for a limited period: issue, resume with rotation, theft detection, revocation."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from ..conftest import Gateways
from ..helpers import CURRENT, app_subject

DAY = 86_400


@pytest.fixture
def auth(app: Flask) -> dict[str, str]:
    key = app.extensions["gateway"].apikeys.create("platform backend", ["saved_login"])
    return {"Authorization": f"Bearer {key}"}


def _issue(client: FlaskClient, auth: dict[str, str], sid: str, **more: Any) -> Any:
    body = {"account": "buyer-1001", "subject": sid, **more}
    resp = client.post("/v1/saved-login", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _resume(client: FlaskClient, auth: dict[str, str], token: str) -> Any:
    return client.post("/v1/saved-login/resume", json={"token": token}, headers=auth)


def test_issue_keeps_only_a_hash_and_sets_a_cookie(
    client: FlaskClient, auth, r: redis.Redis
) -> None:
    sid, _ = app_subject(client, saved_login=True)
    got = _issue(client, auth, sid, lifetime_s=7 * DAY)
    selector, _, validator = got["token"].partition(".")
    assert got["account"] == "buyer-1001" and got["subject"] == sid
    record = r.hgetall(f"sl:{selector}")
    assert record["account"] == "buyer-1001" and validator not in repr(record)
    assert 7 * DAY - 5 <= got["max_age_s"] <= 7 * DAY
    assert 0 < r.pttl(f"sl:{selector}") <= 7 * DAY * 1000
    cookie = got["set_cookie"]
    assert cookie.startswith("saved_login=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert f"Max-Age={got['max_age_s']}" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # local development (COOKIE_SECURE off in tests)


def test_lifetime_is_capped(client: FlaskClient, auth) -> None:
    sid, _ = app_subject(client, saved_login=True)
    got = _issue(client, auth, sid, lifetime_s=3650 * DAY)
    assert 30 * DAY - 5 <= got["max_age_s"] <= 30 * DAY
    assert 30 * DAY - 5 <= _issue(client, auth, sid)["max_age_s"] <= 30 * DAY  # the default


def test_no_token_without_saved_login(client: FlaskClient, auth, r: redis.Redis) -> None:
    sid, _ = app_subject(client, personalization=True)
    resp = client.post("/v1/saved-login", json={"account": "a", "subject": sid}, headers=auth)
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "saved_login_not_granted"
    assert list(r.scan_iter("sl:*")) == []


def test_resume_rotates_and_an_old_token_revokes_every_login_of_the_account(
    client: FlaskClient, auth
) -> None:
    sid, _ = app_subject(client, saved_login=True)
    other_device, _ = app_subject(client, saved_login=True)
    first = _issue(client, auth, sid)["token"]
    elsewhere = _issue(client, auth, other_device)["token"]
    resumed = _resume(client, auth, first)
    assert resumed.status_code == 200
    body = resumed.get_json()
    assert body["account"] == "buyer-1001" and body["subject"] == sid
    second = body["token"]
    assert second != first and second.split(".")[0] == first.split(".")[0]
    third = _resume(client, auth, second).get_json()["token"]
    # The thief (or the victim) comes back with a token that was rotated away:
    stolen = _resume(client, auth, first)
    assert stolen.status_code == 401
    error = stolen.get_json()["error"]
    assert error["code"] == "saved_login_reused" and "revoked" in error["message"]
    for token in (third, elsewhere):  # every saved login of the account is gone
        assert _resume(client, auth, token).get_json()["error"]["code"] == "invalid_saved_login"


def test_a_wrong_validator_is_refused_without_revoking(client: FlaskClient, auth) -> None:
    sid, _ = app_subject(client, saved_login=True)
    token = _issue(client, auth, sid)["token"]
    selector = token.split(".")[0]
    guess = selector + "." + "A" * 43
    assert _resume(client, auth, guess).get_json()["error"]["code"] == "invalid_saved_login"
    assert _resume(client, auth, token).status_code == 200


def test_withdrawing_saved_login_revokes_every_token(
    client: FlaskClient, auth, r: redis.Redis
) -> None:
    sid, subject_token = app_subject(client, saved_login=True, personalization=True)
    tokens = [_issue(client, auth, sid)["token"] for _ in range(3)]
    assert len(list(r.scan_iter("sl:*"))) == 3
    client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": {"saved_login": False}, "source": "app"},
        headers={"X-Subject": subject_token},
    )
    assert list(r.scan_iter("sl:*")) == []  # gone with the withdrawal, not at the next use
    assert all(_resume(client, auth, t).status_code == 401 for t in tokens)


def test_withdrawing_everything_revokes_too(client: FlaskClient, auth, r: redis.Redis) -> None:
    sid, subject_token = app_subject(client, saved_login=True)
    token = _issue(client, auth, sid)["token"]
    client.delete("/v1/consent", headers={"X-Subject": subject_token})
    assert list(r.scan_iter("sl:*")) == []
    assert _resume(client, auth, token).status_code == 401


def test_an_account_that_cannot_be_stored_is_400(client: FlaskClient, auth) -> None:
    sid, _ = app_subject(client, saved_login=True)
    body = '{"account": "\\ud800x", "subject": "' + sid + '"}'
    resp = client.post(
        "/v1/saved-login", data=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert resp.status_code == 400


def test_logout_here_and_everywhere(client: FlaskClient, auth) -> None:
    sid, _ = app_subject(client, saved_login=True)
    one, two, three = (_issue(client, auth, sid)["token"] for _ in range(3))
    resp = client.delete("/v1/saved-login", json={"token": one}, headers=auth)
    assert resp.get_json() == {"revoked": 1}
    assert _resume(client, auth, one).status_code == 401
    assert _resume(client, auth, two).status_code == 200
    everywhere = client.delete("/v1/saved-login", json={"account": "buyer-1001"}, headers=auth)
    assert everywhere.get_json() == {"revoked": 2}
    assert _resume(client, auth, three).status_code == 401


@pytest.fixture
def short(redis_url: str, gateways: Gateways) -> Flask:
    return gateways(redis_url, SAVED_LOGIN_MAX_S=1)


def test_a_token_stops_at_its_limit(short: Flask, r: redis.Redis) -> None:
    client = short.test_client()
    key = short.extensions["gateway"].apikeys.create("b", ["saved_login"])
    auth = {"Authorization": f"Bearer {key}"}
    sid, _ = app_subject(client, saved_login=True)
    got = _issue(client, auth, sid, lifetime_s=60)
    assert got["max_age_s"] <= 1  # capped at SAVED_LOGIN_MAX_S
    resumed = _resume(client, auth, got["token"])  # within the limit: fine
    assert resumed.status_code == 200
    assert resumed.get_json()["expires_at_ms"] == got["expires_at_ms"]  # rotation keeps it
    # Without the key's own expiry (a store whose expiry lags), the script's clock still ends it.
    r.persist("sl:" + got["token"].split(".")[0])
    time.sleep(max(0.0, got["expires_at_ms"] / 1000 - time.time()) + 0.01)
    late = _resume(client, auth, resumed.get_json()["token"])
    assert late.status_code == 401 and "expired" in late.get_json()["error"]["message"]


def test_secure_deployments_get_a_host_prefixed_cookie(redis_url: str, gateways: Gateways) -> None:
    for cfg, prefixed in (
        ({"COOKIE_SECURE": True}, True),
        ({"COOKIE_SECURE": True, "COOKIE_DOMAIN": "example.com"}, False),
    ):
        application = gateways(redis_url, **cfg)
        client = application.test_client()
        key = application.extensions["gateway"].apikeys.create("b", ["saved_login"])
        auth = {"Authorization": f"Bearer {key}"}
        sid, _ = app_subject(client, saved_login=True)
        cookie = _issue(client, auth, sid)["set_cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
        assert cookie.startswith("__Host-saved_login=") is prefixed
        assert ("Domain=" in cookie) is (not prefixed)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/saved-login", {"subject": "0" * 32}),
        ("/v1/saved-login", {"account": "a", "subject": "forged.token"}),
        ("/v1/saved-login", {"account": "a", "subject": "0" * 32, "lifetime_s": -1}),
        ("/v1/saved-login", {"account": "a", "subject": "0" * 32, "lifetime_s": True}),
        ("/v1/saved-login", {"account": "a", "subject": "0" * 32, "lifetime_s": "1d"}),
        ("/v1/saved-login", ["not", "an", "object"]),
        ("/v1/saved-login/resume", {}),
        ("/v1/saved-login/resume", {"token": 5}),
    ],
)
def test_bad_requests_are_400(client: FlaskClient, auth, path: str, body: Any) -> None:
    assert client.post(path, json=body, headers=auth).status_code == 400


@pytest.mark.parametrize("token", ["garbage", "a.b", "x" * 100, "é" * 20])
def test_garbage_tokens_are_401(client: FlaskClient, auth, token: str) -> None:
    assert _resume(client, auth, token).status_code == 401


def test_the_api_needs_a_saved_login_key(app: Flask, client: FlaskClient) -> None:
    senders = app.extensions["gateway"].apikeys.create("mailer", ["senders"])
    for headers in ({}, {"Authorization": f"Bearer {senders}"}):
        assert client.post("/v1/saved-login", json={}, headers=headers).status_code == 401
        assert client.post("/v1/saved-login/resume", json={}, headers=headers).status_code == 401
        assert client.delete("/v1/saved-login", json={}, headers=headers).status_code == 401
