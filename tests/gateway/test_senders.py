"""The senders' API: may a subject be contacted, the suppression list, and recipients' links."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.errors import StorageUnavailable

from ..helpers import CURRENT, app_subject


@pytest.fixture
def auth(app: Flask) -> dict[str, str]:
    key = app.extensions["gateway"].apikeys.create("campaigns", ["senders"])
    return {"Authorization": f"Bearer {key}"}


def _contact(client: FlaskClient, auth: dict[str, str], sid: str, channel: str) -> Any:
    resp = client.get(f"/v1/senders/contact?subject={sid}&channel={channel}", headers=auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _suppressed(client: FlaskClient, auth: dict[str, str], channel: str, since: str = "0"):
    query = urlencode({"channel": channel, "since": since, "end": "1"})
    resp = client.get(f"/v1/senders/suppressions?{query}", headers=auth)
    assert resp.status_code == 200 and resp.mimetype == "application/x-ndjson"
    *rows, end = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    assert end == {"end": True, "count": len(rows)}  # the list is whole
    # Without end=1 (readers written before it): the same rows, no last line.
    query = urlencode({"channel": channel, "since": since})
    plain = client.get(f"/v1/senders/suppressions?{query}", headers=auth).get_data(as_text=True)
    assert [json.loads(line) for line in plain.splitlines()] == rows
    return rows


def test_contact_follows_the_ledger_and_the_channels(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    sid, token = app_subject(client, advertising=True)
    assert _contact(client, auth, sid, "email")["may_contact"] is True
    links = client.post(
        "/v1/senders/links", json={"subject": sid, "channel": "email"}, headers=auth
    ).get_json()
    client.post(
        links["unsubscribe"].split("localhost", 1)[1], data={"List-Unsubscribe": "One-Click"}
    )
    email = _contact(client, auth, sid, "email")
    assert email["may_contact"] is False and email["advertising"] is True
    assert email["unsubscribed_at"] is not None
    assert _contact(client, auth, sid, "sms")["may_contact"] is True
    client.delete("/v1/consent", headers={"X-Subject": token})
    assert _contact(client, auth, sid, "sms")["may_contact"] is False
    never, _ = app_subject(client, personalization=True)
    assert _contact(client, auth, never, "sms")["may_contact"] is False  # never granted


def test_the_suppression_list_since_a_time(app: Flask, client: FlaskClient, auth) -> None:
    first, _ = app_subject(client, advertising=True)
    second, second_token = app_subject(client, advertising=True)
    mail = app.extensions["gateway"].mail
    client.post(f"/u/{mail.unsubscribe_token(first, 'email')}")
    time.sleep(0.01)
    cut = int(time.time() * 1000)
    time.sleep(0.01)
    client.delete("/v1/consent", headers={"X-Subject": second_token})  # leaves every channel
    email = _suppressed(client, auth, "email")
    assert [row["subject"] for row in email] == [first, second]  # oldest first
    assert [row["subject"] for row in _suppressed(client, auth, "email", str(cut))] == [second]
    assert [row["subject"] for row in _suppressed(client, auth, "sms")] == [second]
    iso = "2000-01-01T00:00:00+08:00"
    assert len(_suppressed(client, auth, "email", iso)) == 2
    # a refusal in the first consent puts the subject on the lists too
    refused, _ = app_subject(client, advertising=False)
    assert refused in {row["subject"] for row in _suppressed(client, auth, "sms")}


def test_the_suppression_list_pages_through_many(
    app: Flask, client: FlaskClient, auth, monkeypatch
) -> None:
    monkeypatch.setattr("gateway.web.senders.PAGE", 3)
    store = app.extensions["gateway"].store
    # seven subjects, two of them sharing a millisecond at a page boundary
    for i, ms in enumerate([10, 20, 30, 30, 40, 50, 60]):  # over several slot groups' lists
        store.r.zadd(store.keys.suppression("email", f"{i:032x}"), {f"{i:032x}": ms})
    rows = _suppressed(client, auth, "email")
    assert [row["subject"] for row in rows] == [f"{i:032x}" for i in range(7)]
    assert [row["at_ms"] for row in rows] == [10, 20, 30, 30, 40, 50, 60]


def test_a_list_the_store_fails_to_finish_is_never_taken_for_whole(
    app: Flask, client: FlaskClient, auth, monkeypatch
) -> None:
    """The store failing after the answer began (injected: the second page's read raises as
    a store that went away does): an ``error`` line with end=1, else a broken-off answer."""
    monkeypatch.setattr("gateway.web.senders.PAGE", 3)
    store = app.extensions["gateway"].store
    for i in range(7):
        store.r.zadd(store.keys.suppression("email", f"{i:032x}"), {f"{i:032x}": 10 * i})
    real, calls = store.suppressed_since, []

    def failing(*args: Any) -> Any:
        calls.append(args)
        if len(calls) % 2 == 0:
            raise StorageUnavailable("storage is unavailable; nothing was stored, retry later")
        return real(*args)

    monkeypatch.setattr(store, "suppressed_since", failing)
    marked = client.get("/v1/senders/suppressions?channel=email&end=1", headers=auth)
    *rows, last = [json.loads(line) for line in marked.get_data(as_text=True).splitlines()]
    assert len(rows) == 3 and last["error"]["code"] == "storage_unavailable"
    with pytest.raises(StorageUnavailable):
        client.get("/v1/senders/suppressions?channel=email", headers=auth).get_data()


def test_many_subjects_in_one_millisecond_are_each_sent_once(
    app: Flask, client: FlaskClient, auth, monkeypatch
) -> None:
    monkeypatch.setattr("gateway.web.senders.PAGE", 3)
    store = app.extensions["gateway"].store
    same = {f"{i:032x}": 10 for i in range(8)}  # more than two pages at one time
    for sid, ms in (same | {"f" * 32: 11}).items():
        store.r.zadd(store.keys.suppression("sms", sid), {sid: ms})
    rows = _suppressed(client, auth, "sms")
    assert sorted(row["subject"] for row in rows) == sorted([*same, "f" * 32])


def test_a_new_grant_takes_the_subject_off_the_lists_it_did_not_leave(
    app: Flask, client: FlaskClient, auth
) -> None:
    sid, token = app_subject(client, advertising=True)
    client.post(f"/u/{app.extensions['gateway'].mail.unsubscribe_token(sid, 'email')}")
    client.delete("/v1/consent", headers={"X-Subject": token})
    assert sid in {row["subject"] for row in _suppressed(client, auth, "sms")}
    client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": {"advertising": True}, "source": "app"},
        headers={"X-Subject": token},
    )
    assert sid not in {row["subject"] for row in _suppressed(client, auth, "sms")}
    assert _contact(client, auth, sid, "sms")["may_contact"] is True
    assert sid in {row["subject"] for row in _suppressed(client, auth, "email")}  # left on its own
    assert _contact(client, auth, sid, "email")["may_contact"] is False


def test_links_for_a_recipient(app: Flask, client: FlaskClient, auth, r) -> None:
    sid, _ = app_subject(client, advertising=True)
    email = client.post(
        "/v1/senders/links",
        json={"subject": sid, "channel": "email", "campaign": "spring-2026"},
        headers=auth,
    ).get_json()
    assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email["headers"]["List-Unsubscribe"] == f"<{email['unsubscribe']}>"
    pixel = email["open_pixel"].split("localhost", 1)[1]
    assert client.get(pixel).headers.get("X-Error-Code") is None  # recorded
    sms = client.post(
        "/v1/senders/links", json={"subject": sid, "channel": "sms"}, headers=auth
    ).get_json()
    assert len(sms["code"]) == 10 and sms["code"].isalnum()
    assert sms["unsubscribe"].endswith("/u/" + sms["code"]) and len(sms["unsubscribe"]) < 40


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "nope", "channel": "email"},
        {"subject": "0" * 32, "channel": "fax"},
        {"subject": "0" * 32, "channel": "email", "campaign": "has spaces"},
        {"subject": "0" * 32, "channel": "sms", "phone": "call me"},
        {"subject": "0" * 32, "channel": "sms", "phone": 123},
        ["not", "an", "object"],
    ],
)
def test_bad_link_requests_are_400(client: FlaskClient, auth, body) -> None:
    resp = client.post("/v1/senders/links", json=body, headers=auth)
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "subject=nope&channel=email",
        "subject=" + "0" * 32 + "&channel=fax",
        "subject=" + "0" * 32,
    ],
)
def test_bad_contact_queries_are_400(client: FlaskClient, auth, query: str) -> None:
    assert client.get(f"/v1/senders/contact?{query}", headers=auth).status_code == 400


@pytest.mark.parametrize(
    "since", ["yesterday", "2026-01-01T00:00:00", "-5", "²", "9" * 5000, "1" * 17]
)
def test_bad_since_is_400(client: FlaskClient, auth, since: str) -> None:
    resp = client.get(f"/v1/senders/suppressions?channel=email&since={since}", headers=auth)
    assert resp.status_code == 400


def test_the_senders_api_needs_a_senders_key(app: Flask, client: FlaskClient) -> None:
    other = app.extensions["gateway"].apikeys.create("backend", ["saved_login"])
    for headers in ({}, {"Authorization": f"Bearer {other}"}):
        assert (
            client.get("/v1/senders/suppressions?channel=email", headers=headers).status_code == 401
        )
        resp = client.post("/v1/senders/links", json={}, headers=headers)
        assert resp.status_code == 401


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 2**40), st.integers(0, 50)),
        max_size=1500,
        unique_by=lambda x: x[0],
    ),
    since=st.integers(0, 60),
    limit=st.integers(1, 1000),
)
def test_a_page_read_in_chunks_equals_the_whole_lists_merged(
    app: Flask, rows: list[tuple[int, int]], since: int, limit: int
) -> None:
    """The fast path (each group's list read a chunk at a time, only where the page needs it)
    gives exactly the slow one: every group's whole list, merged, cut at ``limit``."""
    _same_page_as_the_whole_lists(app, rows, since, limit)


@pytest.mark.parametrize("limit", [1, 37, 1000, 5000])
def test_many_per_group_are_read_in_chunks_and_equal_the_whole_lists(
    app: Flask, limit: int
) -> None:
    """Some 47 rows per group, pages of up to 5,000: chunks run out and are read on."""
    rows = [((n * 7919) % 2**40, n % 50) for n in range(3000)]
    _same_page_as_the_whole_lists(app, rows, 0, limit)
    _same_page_as_the_whole_lists(app, rows, 25, limit)


def _same_page_as_the_whole_lists(
    app: Flask, rows: list[tuple[int, int]], since: int, limit: int
) -> None:
    store = app.extensions["gateway"].store
    keys = store.keys.suppressions("email")
    store.r.delete(*keys)
    pipe = store.r.pipeline(transaction=False)
    for n, ms in rows:
        sid = f"{n:032x}"
        pipe.zadd(store.keys.suppression("email", sid), {sid: ms})
    pipe.execute()
    whole = sorted((ms, f"{n:032x}") for n, ms in rows if ms >= since)[:limit]
    page = store.suppressed_since("email", since, limit)
    assert [(row.at_ms, row.subject) for row in page] == whole
