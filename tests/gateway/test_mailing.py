"""Email open beacons and unsubscribe links (gateway/mailing.py), on a real Valkey."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.core.links import MailTokens
from gateway.web.mailing import unsubscribe_headers

from ..conftest import KEYS
from ..helpers import app_subject, stream_events

GIF_PREFIX = b"GIF89a"


def _mail(app: Flask) -> MailTokens:
    return app.extensions["gateway"].mail


def _state(client: FlaskClient, token: str) -> dict[str, Any]:
    return client.get("/v1/consent", headers={"X-Subject": token}).get_json()


def _ledger(client: FlaskClient, token: str) -> list[tuple[str, str]]:
    entries = client.get("/v1/consent/history", headers={"X-Subject": token}).get_json()
    return [(e["source"], e["action"]) for e in entries["entries"]]


# ---------------------------------------------------------------------- open beacon
def test_an_open_is_recorded_while_advertising_is_granted(
    app: Flask, client: FlaskClient, r: redis.Redis
) -> None:
    sid, _ = app_subject(client, advertising=True)
    resp = client.get(f"/e/{_mail(app).open_token(sid, 'spring-2026')}.gif")
    assert resp.status_code == 200 and resp.mimetype == "image/gif"
    assert resp.data.startswith(GIF_PREFIX) and "no-store" in resp.headers["Cache-Control"]
    assert "X-Error-Code" not in resp.headers
    [(_, purpose, part)] = stream_events(r)
    assert purpose == "advertising"
    assert part["sid"] == sid and part["type"] == "email_open"
    assert part["campaign"] == "spring-2026"
    assert set(part) == {"sid", "event_id", "type", "ts", "campaign"}  # no IP, no user agent


def test_an_open_without_advertising_stores_nothing(
    app: Flask, client: FlaskClient, r: redis.Redis, snap
) -> None:
    sid, _ = app_subject(client, personalization=True)
    before = snap(r)
    resp = client.get(f"/e/{_mail(app).open_token(sid, 'spring-2026')}.gif")
    assert resp.status_code == 200 and resp.data.startswith(GIF_PREFIX)
    assert resp.headers["X-Error-Code"] == "not_consented"
    assert snap(r) == before


@pytest.mark.parametrize(
    "headers",
    [
        {
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Dest": "document",
        },
        {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},  # no fetch metadata
    ],
    ids=["navigation", "old browser's navigation"],
)
def test_an_open_loaded_as_a_page_stores_nothing(
    app: Flask, client: FlaskClient, r: redis.Redis, snap, headers: dict[str, str]
) -> None:
    """A link to the beacon (another site's, or one followed by hand) is no email open; a
    mail client's or webmail's image request (even cross-site) is."""
    sid, _ = app_subject(client, advertising=True)
    url = f"/e/{_mail(app).open_token(sid, 'spring-2026')}.gif"
    before = snap(r)
    resp = client.get(url, headers=headers)
    assert resp.status_code == 200 and resp.data.startswith(GIF_PREFIX)
    assert resp.headers["X-Error-Code"] == "navigation_refused"
    assert snap(r) == before
    image = {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"}
    assert "X-Error-Code" not in client.get(url, headers=image).headers
    assert len(stream_events(r)) == 1


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-5] + ("A" if t[-5] != "A" else "B") + t[-4:],  # the signature altered
        lambda t: t.replace(".", "x.", 1),  # the payload altered
        lambda t: "not-a-token",
        lambda t: "x" * 2000,
    ],
)
def test_a_forged_open_token_stores_nothing_and_still_answers_the_gif(
    app: Flask, client: FlaskClient, r: redis.Redis, snap, forge
) -> None:
    sid, _ = app_subject(client, advertising=True)
    token = forge(_mail(app).open_token(sid, "spring-2026"))
    before = snap(r)
    resp = client.get(f"/e/{token}.gif")
    assert resp.status_code == 200 and resp.data.startswith(GIF_PREFIX)
    assert resp.headers["X-Error-Code"] == "invalid_token"
    assert snap(r) == before


def test_tokens_of_one_kind_do_not_pass_as_another(app: Flask, client: FlaskClient) -> None:
    sid, _ = app_subject(client, advertising=True)
    unsubscribe = _mail(app).unsubscribe_token(sid, "email")
    assert client.get(f"/e/{unsubscribe}.gif").headers["X-Error-Code"] == "invalid_token"
    assert client.post(f"/u/{_mail(app).open_token(sid, 'c1')}").status_code == 404
    other = MailTokens(["another-gateway's key"], ("email", "sms"))  # signed elsewhere
    assert client.get(f"/u/{other.unsubscribe_token(sid, 'email')}").status_code == 404


def test_no_opens_are_recorded_once_email_was_left(
    app: Flask, client: FlaskClient, r: redis.Redis
) -> None:
    sid, token = app_subject(client, advertising=True)
    client.post(f"/u/{_mail(app).unsubscribe_token(sid, 'email')}")
    resp = client.get(f"/e/{_mail(app).open_token(sid, 'c1')}.gif")
    assert resp.headers["X-Error-Code"] == "unsubscribed"
    assert stream_events(r, "advertising") == []
    # advertising as such still stands: the person left email only
    assert _state(client, token)["purposes"]["advertising"]["granted"] is True


# ---------------------------------------------------------------------- unsubscribe
def test_the_unsubscribe_page_has_one_button_in_both_languages(
    app: Flask, client: FlaskClient
) -> None:
    sid, _ = app_subject(client, advertising=True)
    path = f"/u/{_mail(app).unsubscribe_token(sid, 'email')}"
    resp = client.get(path)
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert "退订营销邮件" in page and "Unsubscribe from marketing email" in page
    assert page.count("<button") == 1
    assert f'action="{path}"' in page and 'method="post"' in page
    assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_leaving_email_keeps_sms_and_is_on_the_ledger(app: Flask, client: FlaskClient) -> None:
    sid, token = app_subject(client, advertising=True, personalization=True)
    resp = client.post(f"/u/{_mail(app).unsubscribe_token(sid, 'email')}")
    assert resp.status_code == 200
    assert "已退订营销邮件" in resp.get_data(as_text=True)
    state = _state(client, token)
    assert state["channels"]["email"]["unsubscribed"] is True
    assert state["channels"]["email"]["may_contact"] is False
    assert state["channels"]["sms"] == {"unsubscribed": False, "at": None, "may_contact": True}
    assert state["purposes"]["advertising"]["granted"] is True
    assert _ledger(client, token) == [("app", "consent"), ("email", "unsubscribe:email")]
    # The page now offers the one step left: leaving all advertising.
    page = client.get(f"/u/{_mail(app).unsubscribe_token(sid, 'email')}").get_data(as_text=True)
    assert 'name="scope" value="all"' in page and "停止所有商业广告" in page


def test_leaving_all_advertising_from_a_link(app: Flask, client: FlaskClient) -> None:
    sid, token = app_subject(client, advertising=True, personalization=True)
    resp = client.post(f"/u/{_mail(app).unsubscribe_token(sid, 'sms')}", data={"scope": "all"})
    assert "已停止所有商业广告" in resp.get_data(as_text=True)
    state = _state(client, token)
    assert state["purposes"]["advertising"]["granted"] is False
    assert state["purposes"]["personalization"]["granted"] is True
    assert not any(ch["may_contact"] for ch in state["channels"].values())
    assert _ledger(client, token) == [
        ("app", "consent"),
        ("sms", "unsubscribe:sms"),
        ("sms", "withdraw"),
    ]


def test_one_click_unsubscribe_and_its_replay(app: Flask, client: FlaskClient) -> None:
    """RFC 8058: the mail provider posts ``List-Unsubscribe=One-Click``, no page, no cookie."""
    sid, token = app_subject(client, advertising=True)
    url = f"/u/{_mail(app).unsubscribe_token(sid, 'email')}"
    for _ in range(3):
        resp = client.post(
            url,
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert resp.status_code == 200 and resp.mimetype == "text/plain"
        assert "Set-Cookie" not in resp.headers
    assert _ledger(client, token) == [("app", "consent"), ("email", "unsubscribe:email")]


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "é" * 10, "x" * 5000])
def test_a_forged_unsubscribe_link_changes_nothing(
    client: FlaskClient, r: redis.Redis, snap, token: str
) -> None:
    before = snap(r)
    assert client.get(f"/u/{token}").status_code == 404
    resp = client.post(f"/u/{token}", data="List-Unsubscribe=One-Click")
    assert resp.status_code == 404 and "链接无效" in resp.get_data(as_text=True)
    assert snap(r) == before


def test_list_unsubscribe_header_values(app: Flask, client: FlaskClient) -> None:
    sid, token = app_subject(client, advertising=True)
    headers = unsubscribe_headers(_mail(app), "https://t.example.com/", sid)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = headers["List-Unsubscribe"]
    assert url.startswith("<https://t.example.com/u/") and url.endswith(">")
    client.post(url[len("<https://t.example.com") : -1], data={"List-Unsubscribe": "One-Click"})
    assert _state(client, token)["channels"]["email"]["unsubscribed"] is True


def test_link_tokens_refuse_what_they_cannot_carry() -> None:
    tokens = MailTokens(KEYS, ("email", "sms"))
    with pytest.raises(ValueError):
        tokens.open_token("0" * 32, "no spaces allowed")
    with pytest.raises(ValueError):
        tokens.unsubscribe_token("0" * 32, "fax")
    with pytest.raises(ValueError):
        tokens.open_token("not-a-subject", "c1")
    assert tokens.read_open(tokens.open_token("0" * 32, "c1")) == ("0" * 32, "c1")


def test_an_open_over_the_events_limit_is_still_the_gif(
    gateways, redis_url: str, r: redis.Redis, snap
) -> None:  # type: ignore[no-untyped-def]
    app = gateways(
        redis_url,
        RATE_EVENTS_BURST=1,
        RATE_EVENTS_PER_HOUR=1,
        MAX_EVENTS_PER_REQUEST=1,
        MAX_EVENTS_PER_BATCH=1,
    )
    client = app.test_client()
    sid, _ = app_subject(client, advertising=True)
    url = f"/e/{_mail(app).open_token(sid, 'spring-2026')}.gif"
    assert "X-Error-Code" not in client.get(url).headers  # the bucket's one token
    before = snap(r)
    resp = client.get(url)
    assert resp.status_code == 200 and resp.data.startswith(GIF_PREFIX)  # never a broken image
    assert resp.headers["X-Error-Code"] == "rate_limited"
    assert snap(r) == before
