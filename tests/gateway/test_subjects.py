"""POST /v1/subjects, and the APP's X-Subject token on the consent endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import ORIGIN
from tests.helpers import CURRENT, K, separately

pytestmark = pytest.mark.stores  # run on the embedded Valkey, Redis 7.0 and a cluster


def new_subject(client: FlaskClient) -> tuple[str, str]:
    resp = client.post("/v1/subjects")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    return body["token"], body["subject"]


def app_grant(client: FlaskClient, token: str, **purposes: bool) -> Any:
    """Record ``purposes`` for an APP subject (sensitive grants alone, as the SDK does)."""
    for decided, source in separately(purposes, "app") or [({}, "app")]:
        resp = client.post(
            "/v1/consent",
            json={"policy_version": CURRENT, "purposes": decided, "source": source},
            headers={"X-Subject": token},
        )
        assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_a_subject_token_verifies_names_a_new_random_id_and_stores_nothing(client, app, r, snap):
    before = snap(r)
    token, sid = new_subject(client)
    token2, sid2 = new_subject(client)
    assert sid != sid2 and len(sid) == 32 and sid.isalnum()
    tokens = app.extensions["gateway"].tokens
    assert tokens.verify_subject(token) == sid
    assert tokens.verify_subject(token2) == sid2
    assert snap(r) == before  # nothing to keep until the installation consents


def test_creating_a_subject_sets_no_cookie_and_is_not_cached(client):
    resp = client.post("/v1/subjects")
    assert resp.headers.get_all("Set-Cookie") == []
    assert resp.headers["Cache-Control"] == "no-store"


def test_another_site_cannot_create_subjects_through_a_visitors_browser(client):
    resp = client.post("/v1/subjects", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "cross_site_refused"
    allowed = client.post("/v1/subjects", headers={"Origin": ORIGIN})
    assert allowed.status_code == 201


def test_consent_with_the_header_is_recorded_for_that_subject_without_cookies(client, app, r):
    token, sid = new_subject(client)
    answer = app_grant(client, token, personalization=True, precise_location=False)
    assert answer["receipt"]["subject"] == sid
    state = client.get("/v1/consent", headers={"X-Subject": token}).get_json()
    assert state["purposes"]["personalization"]["granted"] is True
    assert state["purposes"]["precise_location"]["granted"] is False
    assert r.exists(K.ledger(sid))
    # nothing about the browser: the APP holds its token itself
    resp = client.get("/v1/consent", headers={"X-Subject": token})
    assert resp.headers.get_all("Set-Cookie") == []


def test_withdrawal_history_and_access_work_with_the_header(client):
    token, sid = new_subject(client)
    app_grant(client, token, personalization=True)
    gone = client.delete("/v1/consent", headers={"X-Subject": token})
    assert gone.status_code == 200
    assert gone.get_json()["state"]["purposes"]["personalization"]["granted"] is False
    history = client.get("/v1/consent/history", headers={"X-Subject": token}).get_json()
    assert len(history["entries"]) == 2 and history["chain"]["intact"]
    mine = client.get("/v1/subject", headers={"X-Subject": token}).get_json()
    assert mine["subject"] == sid and len(mine["ledger"]) == 2


def test_a_forged_or_altered_token_is_refused_and_records_nothing(client, r, snap):
    token, _ = new_subject(client)
    before = snap(r)
    for bad in (token[:-2] + ("aa" if not token.endswith("aa") else "bb"), "x" * 40, ""):
        resp = client.post(
            "/v1/consent",
            json={"policy_version": CURRENT, "purposes": {"personalization": True}},
            headers={"X-Subject": bad},
        )
        assert resp.status_code == 401, bad
        assert resp.get_json()["error"]["code"] == "invalid_subject"
    assert snap(r) == before
