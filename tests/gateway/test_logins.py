"""Saved login for a limited period: issue, resume with rotation, theft detection, revocation."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.web.logins import SCOPE

from ..conftest import KEYS, Gateways, snapshot
from ..helpers import CURRENT, K, app_subject

DAY = 86_400


def _keyed(account: str, key: str) -> str:
    """The account index's keyed hash, as docs/protocol.md specifies it."""
    message = b"gateway.saved-login.account:" + account.encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


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


def test_issue_keeps_no_token_nor_plain_account_and_sets_a_cookie(
    client: FlaskClient, auth, r: redis.Redis
) -> None:
    sid, _ = app_subject(client, saved_login=True)
    got = _issue(client, auth, sid, lifetime_s=7 * DAY)
    selector, generation, mac = got["token"].split(".")
    assert generation == "0" and len(mac) == 43
    assert got["account"] == "buyer-1001" and got["subject"] == sid
    record = r.hgetall(K.login(selector))
    assert record["sid"] == sid and record["gen"] == "0"
    assert "buyer-1001" not in repr(snapshot(r)) and mac not in repr(record)
    # The account index is a keyed hash (under the newest key), not a hash anyone can compute.
    assert record["acct"] == _keyed("buyer-1001", KEYS[0])
    assert r.smembers(K.account_logins(_keyed("buyer-1001", KEYS[0]))) == {selector}
    unkeyed = hashlib.sha256(b"buyer-1001").hexdigest()
    assert not any(unkeyed in key for key in r.scan_iter())
    assert 7 * DAY - 5 <= got["max_age_s"] <= 7 * DAY
    assert 0 < r.pttl(K.login(selector)) <= 7 * DAY * 1000
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


def test_reuse_is_recognised_however_many_rotations_ago(
    client: FlaskClient, auth, r: redis.Redis
) -> None:
    """A copy made at the first login and used after 20 resumes (8 was the limit before)."""
    sid, _ = app_subject(client, saved_login=True)
    other_device, _ = app_subject(client, saved_login=True)
    first = _issue(client, auth, sid)["token"]
    elsewhere = _issue(client, auth, other_device)["token"]
    selector = first.split(".")[0]
    fields = set(r.hgetall(K.login(selector)))
    token = first
    for _ in range(20):
        resumed = _resume(client, auth, token)
        assert resumed.status_code == 200, resumed.get_json()
        assert resumed.get_json()["token"] not in (token, first)
        token = resumed.get_json()["token"]
    record = r.hgetall(K.login(selector))
    stolen = _resume(client, auth, first)
    assert stolen.status_code == 401
    error = stolen.get_json()["error"]
    assert error["code"] == "saved_login_reused" and error["fields"] == {"revoked": "2"}
    for live in (token, elsewhere):
        assert _resume(client, auth, live).get_json()["error"]["code"] == "invalid_saved_login"
    assert list(r.scan_iter("sl:*")) == [] and list(r.scan_iter("acct:*")) == []
    assert set(record) == fields and record["gen"] == "20"  # one counter, whatever the count


def test_a_forged_mac_is_refused_without_revoking_or_rotating(
    client: FlaskClient, auth, r: redis.Redis
) -> None:
    sid, _ = app_subject(client, saved_login=True)
    first = _issue(client, auth, sid)["token"]
    current = _resume(client, auth, first).get_json()["token"]
    selector, generation, mac = current.split(".")
    forged = [
        f"{selector}.{generation}.{'A' * 43}",  # the current generation, a wrong mac
        f"{selector}.{generation}.{mac[:-1]}{'B' if mac[-1] != 'B' else 'C'}",
        f"{selector}.0.{'A' * 43}",  # an earlier generation: not genuine, so not a reuse
        f"{selector}.2.{mac}",  # a later generation with the current mac
        f"{selector}.{generation}",  # the old two-part form
        f"{selector}.01.{mac}",
    ]
    for token in forged:
        resp = _resume(client, auth, token)
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == "invalid_saved_login", token
    assert r.hget(K.login(selector), "gen") == "1"  # nothing rotated
    assert _resume(client, auth, current).status_code == 200  # nothing revoked


def test_a_copy_of_the_store_is_useless_without_the_keys(
    client: FlaskClient, auth, redis_url: str, gateways: Gateways
) -> None:
    sid, _ = app_subject(client, saved_login=True)
    token = _issue(client, auth, sid)["token"]
    stranger = gateways(redis_url, SECRET_KEYS=["someone else's key"])
    other_auth = {
        "Authorization": f"Bearer {stranger.extensions['gateway'].apikeys.create('b', [SCOPE])}"
    }
    resp = _resume(stranger.test_client(), other_auth, token)
    assert resp.get_json()["error"]["code"] == "invalid_saved_login"
    assert stranger.extensions["gateway"].logins.held(sid)[0]["account"] is None
    assert _resume(client, auth, token).status_code == 200  # and it harmed nothing


def test_a_sealed_account_cannot_be_moved_to_another_login(
    client: FlaskClient, auth, r: redis.Redis
) -> None:
    """Someone who can write to the store but has no key cannot log in as another account by
    copying its sealed account into a login they hold: the seal names its record."""
    sid, _ = app_subject(client, saved_login=True)
    victim = _issue(client, auth, sid)["token"]
    mine = client.post(
        "/v1/saved-login", json={"account": "attacker", "subject": sid}, headers=auth
    ).get_json()["token"]
    sealed = r.hget(K.login(victim.split(".")[0]), "sealed")
    r.hset(K.login(mine.split(".")[0]), "sealed", sealed)
    resp = _resume(client, auth, mine)
    assert resp.status_code == 401 and "buyer-1001" not in resp.get_data(as_text=True)


def test_tokens_made_before_a_key_rotation_resume_and_move_to_the_new_key(
    client: FlaskClient, auth, r: redis.Redis, redis_url: str, gateways: Gateways
) -> None:
    sid, _ = app_subject(client, saved_login=True)
    first = _issue(client, auth, sid)["token"]
    _issue(client, auth, sid)  # not resumed after the rotation: stays under the old key
    rotated = gateways(redis_url, SECRET_KEYS=["a new key", *KEYS])
    new_client = rotated.test_client()
    new_auth = {
        "Authorization": f"Bearer {rotated.extensions['gateway'].apikeys.create('b', [SCOPE])}"
    }
    resumed = _resume(new_client, new_auth, first)
    assert resumed.status_code == 200 and resumed.get_json()["account"] == "buyer-1001"
    selector = first.split(".")[0]
    assert r.hget(K.login(selector), "acct") == _keyed("buyer-1001", "a new key")
    assert r.smembers(K.account_logins(_keyed("buyer-1001", "a new key"))) == {selector}
    assert selector not in r.smembers(K.account_logins(_keyed("buyer-1001", KEYS[0])))
    # Once the old key is retired, the resumed login lives on under the new one alone.
    only_new = gateways(redis_url, SECRET_KEYS=["a new key"])
    assert only_new.extensions["gateway"].logins.held(sid)[0]["account"] == "buyer-1001"
    # A genuine token made under the old key is still recognised as reused, and log out
    # everywhere finds the logins indexed under either key.
    stolen = _resume(new_client, new_auth, first)
    assert stolen.get_json()["error"]["code"] == "saved_login_reused"
    assert stolen.get_json()["error"]["fields"] == {"revoked": "2"}
    assert list(r.scan_iter("sl:*")) == []


def test_held_shows_each_login_of_the_subject_only(
    app: Flask, client: FlaskClient, auth, r: redis.Redis
) -> None:
    sid, _ = app_subject(client, saved_login=True)
    other, _ = app_subject(client, saved_login=True)
    logins = app.extensions["gateway"].logins
    assert logins.held(sid) == []
    before = int(time.time() * 1000)
    token = _issue(client, auth, sid, lifetime_s=DAY)["token"]
    for _ in range(3):
        token = _resume(client, auth, token).get_json()["token"]
    second = client.post(
        "/v1/saved-login", json={"account": "采购-张三", "subject": sid}, headers=auth
    ).get_json()
    _issue(client, auth, other)
    held = logins.held(sid)
    assert [(h["account"], h["rotations"]) for h in held] == [("buyer-1001", 3), ("采购-张三", 0)]
    for login, made in zip(held, (token, second["token"]), strict=True):
        assert set(login) == {
            "account",
            "issued_at_ms",
            "expires_at_ms",
            "rotations",
            "selector_prefix",
        }
        assert before <= login["issued_at_ms"] <= int(time.time() * 1000)
        assert len(login["selector_prefix"]) == 6 and made.startswith(login["selector_prefix"])
        assert made.split(".")[2] not in repr(login)
    assert held[0]["expires_at_ms"] == held[0]["issued_at_ms"] + DAY * 1000
    assert held[1]["expires_at_ms"] == second["expires_at_ms"]
    r.delete(K.login(token.split(".")[0]))  # expired: its index entry outlives it briefly
    assert [h["account"] for h in logins.held(sid)] == ["采购-张三"]
    logins.revoke_subject(sid)
    assert logins.held(sid) == [] and len(logins.held(other)) == 1


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
    r.persist(K.login(got["token"].split(".")[0]))
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


@pytest.mark.parametrize(
    "token", ["garbage", "a.b", "a.b.c", "x" * 100, "é" * 20, f"{'s' * 16}.0.{'m' * 43}"]
)
def test_garbage_tokens_are_401(client: FlaskClient, auth, token: str) -> None:
    assert _resume(client, auth, token).status_code == 401


def test_the_api_needs_a_saved_login_key(app: Flask, client: FlaskClient) -> None:
    senders = app.extensions["gateway"].apikeys.create("mailer", ["senders"])
    for headers in ({}, {"Authorization": f"Bearer {senders}"}):
        assert client.post("/v1/saved-login", json={}, headers=headers).status_code == 401
        assert client.post("/v1/saved-login/resume", json={}, headers=headers).status_code == 401
        assert client.delete("/v1/saved-login", json={}, headers=headers).status_code == 401
