"""The marketers' dashboard's backend on the real store: the key exchanged for an HttpOnly,
SameSite=Strict session, CSRF on every write, another origin refused, a revoked key ending
its sessions, the queries the API's own (budget, audit), and a key seeing only itself.

The page in Chromium is tests/integration/test_marketers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.http import parse_cookie

from gateway.app import create_app
from gateway.core.apikeys import digest
from gateway.core.sessions import SECURE_COOKIE as COOKIE
from gateway.core.sessions import Sessions

from ..conftest import ORIGIN, make_config
from .test_audiences import index, people

pytestmark = pytest.mark.stores

K = 50


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(
        make_config(redis_url, tmp_path, RATE_LIMITS=False, AUDIENCE_K=K, COOKIE_SECURE=True)
    )
    yield application
    for close in application.extensions["gateway"].closers:
        close()


def https_client(app: Flask) -> FlaskClient:
    """A client over HTTPS: the session cookie is Secure, as in production."""
    c = app.test_client()
    c.environ_base["wsgi.url_scheme"] = "https"
    return c


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return https_client(app)


def new_key(app: Flask, name: str, scope: str = "audiences") -> str:
    key: str = app.extensions["gateway"].apikeys.create(name, [scope])
    return key


def sign_in(client: FlaskClient, key: str) -> Any:
    return client.post("/marketers/session", json={"key": key})


def set_cookie(resp: Any) -> str:
    [header] = [v for k, v in resp.headers.items() if k == "Set-Cookie" and COOKIE in v]
    return str(header)


def test_a_key_becomes_an_httponly_strict_session_and_the_csrf_token_guards_writes(
    app: Flask, client: FlaskClient
) -> None:
    key = new_key(app, "marketing team")
    resp = sign_in(client, key)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["key"] == {"name": "marketing team"} and len(body["csrf"]) > 20
    header = set_cookie(resp)
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/;" in header + ";"
    assert header.startswith("__Host-gw_marketer=")  # no sibling subdomain can set it
    assert "Secure" in header  # the default: cookies only over HTTPS
    value = parse_cookie(header.split(";")[0])[COOKIE]
    assert key not in value and key not in resp.get_data(as_text=True)  # the key is not kept
    assert digest(key) not in value  # the cookie names a session, kept in the store
    assert resp.headers["Cache-Control"] == "no-store"

    # the session answers the page's reads, and gives the same CSRF token back
    again = client.get("/marketers/session")
    assert again.status_code == 200 and again.get_json()["csrf"] == body["csrf"]
    dims = client.get("/marketers/api/dimensions").get_json()
    assert dims["k"] == K and dims["active_within_days"] == [7, 30, 90]
    assert "江苏省" in dims["dimensions"]["province"]["values"]
    assert dims["dimensions"]["city"]["values"] is None  # free values are typed, never listed
    labels = dims["dimensions"]["province"]["labels"]  # the catalogue's
    assert labels["广东省"] == {"zh": "广东省", "en": "Guangdong"}
    assert dims["dimensions"]["industry"]["labels"]["machinery"]["zh"] == "机械"

    # writes: without the token, with a wrong one, from another origin: refused, nothing spent
    query = {"filters": {"province": ["江苏省"]}}
    for headers in (
        {},
        {"X-CSRF-Token": body["csrf"][:-2] + "xx"},
        {"X-CSRF-Token": body["csrf"], "Origin": "https://evil.example"},
        {"X-CSRF-Token": body["csrf"], "Sec-Fetch-Site": "cross-site"},
    ):
        refused = client.post("/marketers/api/estimate", json=query, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.get_json()["error"]["code"] == "csrf_failed"
    assert client.get("/marketers/api/account").get_json()["budget_left"] == 10.0

    ok = client.post("/marketers/api/estimate", json=query, headers={"X-CSRF-Token": body["csrf"]})
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["below_threshold"] is True  # nobody yet: the floor, no budget spent

    # signing in again ends the session the browser held (a copy of its cookie is nobody)
    before = https_client(app)
    before.set_cookie(COOKIE, value, path="/")
    again = sign_in(client, key)
    assert again.status_code == 200 and before.get("/marketers/session").status_code == 401
    value = parse_cookie(set_cookie(again).split(";")[0])[COOKIE]
    body = again.get_json()
    # signing out needs the token too, and ends the session: a copy of the cookie is nobody
    copied = https_client(app)
    copied.set_cookie(COOKIE, value, path="/")
    assert copied.get("/marketers/api/account").status_code == 200
    assert client.delete("/marketers/session").status_code == 403
    out = client.delete("/marketers/session", headers={"X-CSRF-Token": body["csrf"]})
    assert out.status_code == 204 and "Max-Age=0" in set_cookie(out)
    gone = client.get("/marketers/session")
    assert gone.status_code == 401 and gone.get_json()["error"]["code"] == "not_signed_in"
    assert copied.get("/marketers/api/account").status_code == 401


def test_no_other_site_reads_the_dashboard_not_even_an_allowed_origin(
    app: Flask, client: FlaskClient
) -> None:
    """The shop's own pages are an allowed origin for the collection API (CORS with
    credentials), and a sibling site sends SameSite=Strict cookies: the dashboard answers
    neither, and never carries CORS headers."""
    sign_in(client, new_key(app, "marketing team"))
    shop = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-site"}
    for path in ("/marketers/session", "/marketers/api/account", "/marketers/api/dimensions"):
        resp = client.get(path, headers=shop)
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "csrf_failed"
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert resp.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    own = client.get("/marketers/api/account", headers={"Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200 and "Access-Control-Allow-Origin" not in own.headers
    # the collection API still answers the shop with CORS
    policy = client.get("/v1/policy", headers={"Origin": ORIGIN})
    assert policy.headers["Access-Control-Allow-Origin"] == ORIGIN
    # signing in takes JSON only: a form or text/plain could be sent from another site
    plain = client.post(
        "/marketers/session",
        data='{"key": "x"}',
        headers={"Content-Type": "text/plain"},
    )
    assert plain.status_code == 415


def test_only_an_audiences_key_signs_in_and_bad_bodies_are_named(
    app: Flask, client: FlaskClient
) -> None:
    wrong_scope = new_key(app, "backend", "accounts")
    for key in (wrong_scope, "gwk_not-a-key", new_key(app, "m") + "x"):
        resp = sign_in(client, key)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_api_key"
        assert COOKIE not in resp.headers.get("Set-Cookie", "")
    for body in ({}, {"key": 5}, {"key": " "}, {"key": "k", "name": "x"}):
        resp = client.post("/marketers/session", json=body)
        assert resp.status_code == 400, body
        assert resp.get_json()["error"]["code"] == "validation_failed"
    cross = client.post(
        "/marketers/session",
        json={"key": new_key(app, "m2")},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and cross.get_json()["error"]["code"] == "csrf_failed"
    for path in ("/marketers/session", "/marketers/api/account", "/marketers/api/dimensions"):
        resp = client.get(path)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "not_signed_in"


def test_revoking_the_key_ends_its_sessions_and_forged_or_old_cookies_are_nobody(
    app: Flask, client: FlaskClient
) -> None:
    key = new_key(app, "marketing team")
    csrf = sign_in(client, key).get_json()["csrf"]
    assert client.get("/marketers/api/account").status_code == 200
    svc = app.extensions["gateway"]
    [listed] = [k for k in svc.apikeys.list() if k["name"] == "marketing team"]
    assert svc.apikeys.revoke(listed["digest"]) == 1
    resp = client.post(
        "/marketers/api/estimate", json={"filters": {}}, headers={"X-CSRF-Token": csrf}
    )
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "not_signed_in"

    # a cookie signed with another secret: nobody; one the gateway made: somebody (control)
    other_key = new_key(app, "second")
    store = app.extensions["gateway"].store.sessions
    forged, _ = Sessions(["another secret"], store).issue(digest(other_key))
    client.set_cookie(COOKIE, forged, path="/")
    assert client.get("/marketers/session").status_code == 401
    genuine, _ = Sessions(app.config["SECRET_KEYS"], store).issue(digest(other_key))
    client.set_cookie(COOKIE, genuine, path="/")
    assert client.get("/marketers/session").status_code == 200


def test_the_dashboards_queries_are_the_apis_spending_budget_and_each_key_sees_itself(
    app: Flask, client: FlaskClient
) -> None:
    people(client, 60, category="BOLT")
    index(app)
    mine, theirs = new_key(app, "team a"), new_key(app, "team b")
    other = https_client(app)
    other_csrf = sign_in(other, theirs).get_json()["csrf"]
    csrf = sign_in(client, mine).get_json()["csrf"]
    headers = {"X-CSRF-Token": csrf}

    got = client.post(
        "/marketers/api/estimate", json={"filters": {"category": ["BOLT"]}}, headers=headers
    )
    assert got.status_code == 200, got.get_json()
    answer = got.get_json()
    assert answer["below_threshold"] is False and answer["epsilon_spent"] == 0.5
    cells = client.post(
        "/marketers/api/breakdown",
        json={"by": "company_size", "filters": {"category": ["BOLT"]}},
        headers=headers,
    ).get_json()
    assert [c["value"] for c in cells["cells"]] == ["1-19", "20-99", "100-499", "500-999", "1000+"]
    assert all(c["below_threshold"] and c["estimate"] is None for c in cells["cells"])
    bad = client.post(
        "/marketers/api/estimate", json={"filters": {"colour": ["red"]}}, headers=headers
    )
    assert bad.status_code == 400 and "colour" in str(bad.get_json()["error"])
    other.post(
        "/marketers/api/estimate",
        json={"filters": {"province": ["江苏省"]}},
        headers={"X-CSRF-Token": other_csrf},
    )

    account = client.get("/marketers/api/account").get_json()
    assert account["key"] == {"name": "team a"} and account["budget"] == 10.0
    assert account["budget_left"] == 10.0 - 0.5 == answer["budget_left"]
    assert len(account["month"]) == 7
    recent = account["recent"]
    assert [(q["kind"], q["outcome"]) for q in recent] == [
        ("estimate", "validation_failed"),
        ("breakdown", "answered"),
        ("estimate", "answered"),
    ]  # newest first, this key's only (team b asked about 江苏省)
    assert recent[2]["answer"]["estimate"] == answer["estimate"]
    assert recent[2]["filters"] == {"category": ["BOLT"]}
    assert all("key" not in q and "key_digest" not in q for q in recent)
    assert "江苏省" not in str(recent)
    theirs_seen = other.get("/marketers/api/account").get_json()
    assert [q["filters"] for q in theirs_seen["recent"]] == [{"province": ["江苏省"]}]
