"""``POST /v1/optout``: a standing refusal of advertising, with or without a subject."""

from __future__ import annotations

from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.core.tokens import OPTOUT_COOKIE, VID_COOKIE

from ..conftest import ORIGIN
from ..helpers import CURRENT, grant, page_view

FORM = {"Origin": ORIGIN, "Content-Type": "application/x-www-form-urlencoded"}


def _sources(client: FlaskClient) -> list[tuple[str, Any]]:
    entries = client.get("/v1/consent/history").get_json()["entries"]
    return [(e["source"], e["purposes"].get("advertising")) for e in entries]


def test_a_plain_form_opts_out_before_any_consent(
    client: FlaskClient, r: redis.Redis, snap
) -> None:
    before = snap(r)
    resp = client.post("/v1/optout", data="", headers=FORM)
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert "已拒绝商业广告" in page and "Advertising refused" in page
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith(OPTOUT_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=" in cookie
    assert client.get_cookie(VID_COOKIE) is None  # no subject is made for it
    assert snap(r) == before  # and nothing is stored

    # Later, a banner grant of advertising from this browser does not count.
    body = grant(client, advertising=True, personalization=True)
    assert body["state"]["optout"] is True
    assert body["receipt"]["purposes"]["advertising"] is False
    assert body["state"]["purposes"]["personalization"]["granted"] is True


def test_an_opt_out_withdraws_a_grant_once_on_the_ledger(client: FlaskClient) -> None:
    grant(client, advertising=True, personalization=True)
    json_headers = {"Origin": ORIGIN, "Accept": "application/json"}
    first = client.post("/v1/optout", headers=json_headers).get_json()
    assert first == {
        "optout": True,
        "withdrawn": True,
        "advertising": False,
        "deleted": {"advertising": 0},  # no email was opened: nothing was kept under it
    }
    again = client.post("/v1/optout", headers=json_headers).get_json()
    assert again == {"optout": True, "withdrawn": False, "advertising": False, "deleted": {}}
    assert _sources(client) == [("banner", True), ("optout", False)]
    state = client.get("/v1/consent").get_json()
    assert state["optout"] is True
    assert state["purposes"]["advertising"]["granted"] is False
    assert state["channels"]["email"]["may_contact"] is False


def test_the_cookie_holds_on_beacons_and_events(app: Flask, r: redis.Redis) -> None:
    """A grant recorded elsewhere (another device of the subject): the opted-out browser's
    first beacon withdraws it, once."""
    client = app.test_client()
    grant(client, advertising=True, personalization=True)
    opted = app.test_client()
    opted.post("/v1/optout", headers={"Origin": ORIGIN})
    opted.set_cookie(VID_COOKIE, client.get_cookie(VID_COOKIE).value)
    assert opted.get("/p.gif?type=page_view&url=https://shop.example.com/").status_code == 200
    body = opted.post("/v1/events", json={"events": [page_view()]}, headers={"Origin": ORIGIN})
    assert body.get_json()["stored"] == 1  # personalization still counts
    assert _sources(client) == [("banner", True), ("optout", False)]


def test_a_forged_opt_out_cookie_is_ignored(client: FlaskClient) -> None:
    client.set_cookie(OPTOUT_COOKIE, "2026-12-01T00:00:00.000+00:00.forged")
    body = grant(client, advertising=True)
    assert body["state"]["optout"] is False
    assert body["state"]["purposes"]["advertising"]["granted"] is True


def test_a_foreign_site_cannot_opt_a_visitor_out(client: FlaskClient) -> None:
    resp = client.post("/v1/optout", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403
    assert not any(c.startswith(OPTOUT_COOKIE) for c in resp.headers.getlist("Set-Cookie"))


def test_the_policy_version_is_not_changed_by_an_opt_out(client: FlaskClient) -> None:
    grant(client, advertising=True)
    client.post("/v1/optout", headers={"Origin": ORIGIN})
    assert client.get("/v1/consent").get_json()["policy_version"] == CURRENT
