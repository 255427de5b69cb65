"""SMS unsubscribes: short codes that expire, replies through the provider's webhook, and
what is held about a subject for SMS."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.core.errors import ValidationFailed

from ..conftest import Gateways
from ..helpers import K, app_subject

SECRET = "provider-shared-secret"
HOOK = {"X-Webhook-Secret": SECRET}


@pytest.fixture
def app(redis_url: str, gateways: Gateways) -> Flask:
    return gateways(redis_url, SMS_WEBHOOK_SECRET=SECRET, SMS_CODE_TTL_S=2)


def _sms(client: FlaskClient, token: str) -> dict[str, Any]:
    return client.get("/v1/consent", headers={"X-Subject": token}).get_json()["channels"]["sms"]


def test_a_short_link_unsubscribes_from_sms_only(app: Flask, client: FlaskClient) -> None:
    sid, token = app_subject(client, advertising=True)
    code = app.extensions["gateway"].sms.new_code(sid)
    page = client.get(f"/u/{code}")
    assert page.status_code == 200 and "退订营销短信" in page.get_data(as_text=True)
    assert client.post(f"/u/{code}").status_code == 200
    assert _sms(client, token)["unsubscribed"] is True
    email = client.get("/v1/consent", headers={"X-Subject": token}).get_json()["channels"]
    assert email["email"]["may_contact"] is True


def test_an_expired_code_is_unknown(app: Flask, client: FlaskClient, r: redis.Redis) -> None:
    sid, token = app_subject(client, advertising=True)
    code = app.extensions["gateway"].sms.new_code(sid)
    assert 0 < r.ttl(K.sms_code(code)) <= 2
    time.sleep(2.2)
    assert client.get(f"/u/{code}").status_code == 404
    assert client.post(f"/u/{code}").status_code == 404
    assert _sms(client, token)["unsubscribed"] is False


@pytest.mark.parametrize("reply", ["TD", "td", " 退订 ", "T", "stop", "STOP\n"])
def test_a_reply_unsubscribes_the_senders_subject(
    app: Flask, client: FlaskClient, r: redis.Redis, reply: str
) -> None:
    sid, token = app_subject(client, advertising=True)
    app.extensions["gateway"].sms.new_code(sid, phone="+86 138-0013-8000")
    assert not any("13800138000" in k for k in r.scan_iter("sms:*"))  # only a keyed hash
    resp = client.post(
        "/v1/sms/inbound", json={"from": "+8613800138000", "text": reply}, headers=HOOK
    )
    assert resp.get_json() == {"unsubscribed": True, "already": False}
    assert _sms(client, token)["unsubscribed"] is True
    again = client.post(
        "/v1/sms/inbound", data={"from": "+86 13800138000", "text": reply}, headers=HOOK
    )
    assert again.get_json() == {"unsubscribed": True, "already": True}


def test_replies_that_are_not_unsubscribes_or_from_strangers(
    app: Flask, client: FlaskClient
) -> None:
    sid, token = app_subject(client, advertising=True)
    app.extensions["gateway"].sms.new_code(sid, phone="13800138000")
    hello = client.post(
        "/v1/sms/inbound", json={"from": "13800138000", "text": "你好"}, headers=HOOK
    )
    assert hello.get_json()["reason"] == "not_an_unsubscribe_reply"
    stranger = client.post(
        "/v1/sms/inbound", json={"from": "13900000000", "text": "TD"}, headers=HOOK
    )
    assert stranger.get_json()["reason"] == "unknown_sender"
    assert _sms(client, token)["unsubscribed"] is False


@pytest.mark.parametrize(
    "headers", [{}, {"X-Webhook-Secret": "wrong"}, {"X-Webhook-Secret": SECRET + "x"}]
)
def test_the_webhook_needs_its_secret(client: FlaskClient, headers: dict[str, str]) -> None:
    resp = client.post(
        "/v1/sms/inbound", json={"from": "13800138000", "text": "TD"}, headers=headers
    )
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "body", [{"text": "TD"}, {"from": "13800138000"}, {"from": "call me", "text": "TD"}, [1, 2]]
)
def test_bad_webhook_bodies_are_400(client: FlaskClient, body: Any) -> None:
    resp = client.post("/v1/sms/inbound", json=body, headers=HOOK)
    assert resp.status_code == 400


def test_without_a_secret_there_is_no_webhook(redis_url: str, gateways: Gateways) -> None:
    resp = (
        gateways(redis_url)
        .test_client()
        .post("/v1/sms/inbound", json={"from": "13800138000", "text": "TD"})
    )
    assert resp.status_code == 404


@pytest.mark.parametrize("spelled", ["13800138000", "8613800138000", "0086 138 0013 8000"])
def test_a_reply_matches_the_number_however_it_is_spelled(
    app: Flask, client: FlaskClient, spelled: str
) -> None:
    sid, token = app_subject(client, advertising=True)
    app.extensions["gateway"].sms.new_code(sid, phone="+86 138-0013-8000")
    resp = client.post("/v1/sms/inbound", json={"from": spelled, "text": "TD"}, headers=HOOK)
    assert resp.get_json()["unsubscribed"] is True
    assert _sms(client, token)["unsubscribed"] is True


def test_replies_are_recognised_after_a_key_rotation(
    app: Flask, redis_url: str, gateways: Gateways
) -> None:
    client = app.test_client()
    sid, token = app_subject(client, advertising=True)
    app.extensions["gateway"].sms.new_code(sid, phone="13800138000")
    old_keys = app.config["SECRET_KEYS"]
    rotated = gateways(redis_url, SECRET_KEYS=["a new key", *old_keys], SMS_WEBHOOK_SECRET=SECRET)
    resp = rotated.test_client().post(
        "/v1/sms/inbound", json={"from": "13800138000", "text": "退订"}, headers=HOOK
    )
    assert resp.get_json()["unsubscribed"] is True
    assert _sms(client, token)["unsubscribed"] is True


def test_a_bad_number_leaves_no_code_behind(
    app: Flask, client: FlaskClient, r: redis.Redis
) -> None:
    sid, _ = app_subject(client, advertising=True)
    with pytest.raises(ValidationFailed):
        app.extensions["gateway"].sms.new_code(sid, phone="call me")
    assert list(r.scan_iter("sms:*")) == []


def test_an_unsubscribe_alone_does_not_answer_the_banner(app: Flask, client: FlaskClient) -> None:
    """A subject who never chose anything and leaves SMS from a link still gets asked."""
    made = client.post("/v1/subjects").get_json()
    code = app.extensions["gateway"].sms.new_code(made["subject"])
    client.post(f"/u/{code}")
    state = client.get("/v1/consent", headers={"X-Subject": made["token"]}).get_json()
    assert state["recorded"] is False and state["policy_version"] is None
    assert state["channels"]["sms"]["unsubscribed"] is True


def test_held_shows_the_subjects_codes_and_whether_a_number_hash_is_kept(
    app: Flask, client: FlaskClient
) -> None:
    sms = app.extensions["gateway"].sms
    sid, _ = app_subject(client, advertising=True)
    other, _ = app_subject(client, advertising=True)
    nothing = {
        "codes": [],
        "phone_hash_kept": False,
        "phone_hashes": 0,
        "phone_hash_expires_at_ms": None,
    }
    assert sms.held(sid) == nothing
    before = int(time.time() * 1000)
    made = {sms.new_code(sid), sms.new_code(sid, phone="13800138000")}
    sms.new_code(other)
    after = int(time.time() * 1000)
    held = sms.held(sid)
    assert {c["code"] for c in held["codes"]} == made  # not the other subject's
    for code in held["codes"]:
        assert before < code["expires_at_ms"] <= after + 2000 + 50  # SMS_CODE_TTL_S=2
    assert held["phone_hash_kept"] is True and held["phone_hashes"] == 1
    assert before < held["phone_hash_expires_at_ms"] <= after + 2000 + 50
    assert "13800138000" not in repr(held)
    # The same number given for someone else: its hash now finds them, not this subject.
    sms.new_code(other, phone="+86 138 0013 8000")
    moved = sms.held(sid)
    assert moved["phone_hash_kept"] is False and len(moved["codes"]) == 2
    assert sms.held(other)["phone_hash_kept"] is True
    time.sleep(2.2)
    assert sms.held(sid) == nothing  # expired with the codes
