"""Withdrawal deletes (PIPL art. 47): withdrawing a purpose, however it is withdrawn (the
banner or settings, ``DELETE /v1/consent``, GPC, an opt-out), deletes the subject's stored
event parts of that purpose in the same atomic step as the ledger entry, and the answer says
what went. Other purposes' data, other subjects' data and the ledger stay. On every store
(Valkey, Redis 7.0, the cluster)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import create_app
from gateway.storage import consent as storage_consent

from ..conftest import make_config
from ..helpers import CURRENT, K, app_subject, event, stream_events
from .test_audiences import index, true_count

pytestmark = pytest.mark.stores


def send(client: FlaskClient, token: str, n: int, **fields: Any) -> None:
    """``n`` requests, each a search (personalization) with a device context field
    (account_security) and a GPS fix (precise_location) where granted."""
    for _ in range(n):
        body = {
            "events": [event("search", keyword="轴承", gps={"lat": 31.2, "lon": 121.5})],
            "context": {"app_version": "5.1.0"},
        }
        resp = client.post("/v1/batch", json=body, headers={"X-Subject": token})
        assert resp.status_code == 202 and resp.get_json()["stored"] == 1, resp.get_json()


def held(r: redis.Redis, sid: str) -> dict[str, int]:
    """The subject's stored parts, per purpose."""
    out: dict[str, int] = {}
    for _, purpose, part in stream_events(r):
        if part["sid"] == sid:
            out[purpose] = out.get(purpose, 0) + 1
    return out


def consent(client: FlaskClient, token: str, source: str = "settings", **purposes: bool) -> Any:
    resp = client.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": purposes, "source": source},
        headers={"X-Subject": token},
    )
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_withdrawing_a_purpose_deletes_its_data_only_and_says_so(
    client: FlaskClient, r: redis.Redis
) -> None:
    sid, token = app_subject(
        client, personalization=True, account_security=True, precise_location=True
    )
    other_sid, other_token = app_subject(client, personalization=True, account_security=True)
    send(client, token, 3)
    send(client, other_token, 2)
    assert held(r, sid) == {"personalization": 3, "account_security": 3, "precise_location": 3}

    answer = consent(client, token, personalization=False)
    assert answer["deleted"] == {"personalization": 3}
    assert held(r, sid) == {"account_security": 3, "precise_location": 3}
    assert held(r, other_sid) == {"personalization": 2, "account_security": 2}
    # the ledger keeps the proof of the grant and of the withdrawal
    history = client.get("/v1/consent/history", headers={"X-Subject": token}).get_json()
    assert [e["purposes"].get("personalization") for e in history["entries"]][-1] is False
    assert history["chain"]["intact"] is True
    # /v1/subject shows nothing of the purpose any more
    subject = client.get("/v1/subject", headers={"X-Subject": token}).get_json()
    assert "personalization" not in subject["events"]
    assert len(subject["events"]["account_security"]) == 3

    # nothing more is deleted by a refusal of what is not granted, nor by a grant
    assert consent(client, token, personalization=False)["deleted"] == {}
    assert consent(client, token, personalization=True)["deleted"] == {}
    send(client, token, 1)
    assert held(r, sid)["personalization"] == 1  # collected again under the new grant


def test_withdrawing_everything_deletes_every_purposes_data(
    client: FlaskClient, r: redis.Redis
) -> None:
    sid, token = app_subject(
        client, personalization=True, account_security=True, precise_location=True
    )
    send(client, token, 2)
    resp = client.delete("/v1/consent", headers={"X-Subject": token})
    assert resp.status_code == 200
    assert resp.get_json()["deleted"] == {
        "personalization": 2,
        "account_security": 2,
        "precise_location": 2,
    }
    assert held(r, sid) == {}
    # the subject's index no longer points at anything
    subject = client.get("/v1/subject", headers={"X-Subject": token}).get_json()
    assert subject["events"] == {} and subject["ledger_length"] >= 2


def opened(client: FlaskClient, sid: str) -> None:
    """An email open beacon of the subject: one advertising part (``email_open``)."""
    key = client.application.extensions["gateway"].apikeys.create("newsletter", ["senders"])
    links = client.post(
        "/v1/senders/links",
        json={"subject": sid, "channel": "email", "campaign": "spring"},
        headers={"Authorization": f"Bearer {key}"},
    ).get_json()
    path = links["open_pixel"].split("://", 1)[1].split("/", 1)[1]
    resp = client.get("/" + path)
    assert resp.status_code == 200 and "X-Error-Code" not in resp.headers


def test_gpc_and_an_opt_out_delete_the_advertising_data(
    client: FlaskClient, r: redis.Redis
) -> None:
    sid, token = app_subject(client, personalization=True, advertising=True)
    send(client, token, 1)
    opened(client, sid)
    assert held(r, sid) == {"personalization": 1, "advertising": 1}
    # GPC on any later request withdraws advertising once, and its data goes
    resp = client.get("/v1/consent", headers={"X-Subject": token, "Sec-GPC": "1"})
    assert resp.get_json()["purposes"]["advertising"]["granted"] is False
    assert held(r, sid) == {"personalization": 1}

    sid2, token2 = app_subject(client, personalization=True, advertising=True)
    opened(client, sid2)
    optout = client.post(
        "/v1/optout", headers={"X-Subject": token2, "Accept": "application/json"}
    ).get_json()
    assert optout["withdrawn"] is True and optout["advertising"] is False
    assert optout["deleted"] == {"advertising": 1}
    assert held(r, sid2) == {}


def test_the_audience_index_forgets_what_it_derived_from_the_withdrawn_events(
    app: Flask, client: FlaskClient
) -> None:
    """Advertising still granted, personalisation withdrawn: the person is still countable,
    but no longer in the category and activity its deleted events gave it."""
    _, token = app_subject(client, personalization=True, advertising=True)
    body = {"events": [event("search", keyword="螺丝", category="BOLT")]}
    assert client.post("/v1/batch", json=body, headers={"X-Subject": token}).status_code == 202
    index(app)
    assert true_count(app, category=["BOLT"]) == 1
    assert true_count(app, active_within_days=7) == 1
    consent(client, token, personalization=False)
    index(app)
    assert true_count(app, category=["BOLT"]) == 0
    assert true_count(app, active_within_days=7) == 0
    assert true_count(app) == 1  # still counted: advertising stands


def test_a_subject_that_stored_much_is_purged_in_bounded_steps(
    client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each script deletes PURGE_STEP refs at most (3 here, 2,000 in use): one that stored
    more is purged over several, all before the answer, other purposes' refs skipped."""
    monkeypatch.setattr(storage_consent, "PURGE_STEP", 3)
    sid, token = app_subject(client, personalization=True, account_security=True)
    send(client, token, 8)  # 8 personalization entries and 8 account_security, interleaved
    answer = consent(client, token, personalization=False)
    assert answer["deleted"] == {"personalization": 8}
    assert held(r, sid) == {"account_security": 8}


def _left_between_steps(
    app: Flask,
    client: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
    withdrawn: tuple[str, ...] = ("personalization",),
) -> tuple[str, str]:
    """A subject with 8 entries of personalization and 8 of account_security withdraws
    ``withdrawn``, and its gateway stops between the purge's steps (steps of 3: the first,
    with the ledger entry, ran; no further one is sent. The one fake here: a process's death
    cannot be had on demand). The withdrawal answers 503; the store works again afterwards.
    Returns the subject's id and token."""
    monkeypatch.setattr(storage_consent, "PURGE_STEP", 3)
    sid, token = app_subject(client, personalization=True, account_security=True)
    send(client, token, 8)
    _withdraw_and_die(app, client, token, withdrawn)
    return sid, token


def _withdraw_and_die(app: Flask, client: FlaskClient, token: str, withdrawn: Any) -> None:
    """The subject withdraws ``withdrawn``; its gateway stops after the purge's first step."""
    store = app.extensions["gateway"].store
    real = store._purge_script

    def lost(**_: Any) -> Any:
        raise RedisConnectionError("the gateway died here")

    store._purge_script = lost
    try:
        resp = client.post(
            "/v1/consent",
            json={"policy_version": CURRENT, "purposes": dict.fromkeys(withdrawn, False)},
            headers={"X-Subject": token},
        )
    finally:
        store._purge_script = real
    assert resp.status_code == 503  # recorded, but not all deleted: not answered as done


def test_a_purge_its_gateway_left_between_steps_is_finished_by_a_sweep(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = app.extensions["gateway"].store
    sid, _ = _left_between_steps(app, client, monkeypatch)
    left = held(r, sid)
    assert 0 < left["personalization"] < 8 and left["account_security"] == 8
    pending = store.keys.purges(sid)
    [member] = r.zrange(pending, 0, -1)
    assert member.startswith(sid + " ") and member.endswith(" personalization")
    # the record holds the cursor: the first step read ranks 0-2 and deleted what it took
    first = 8 - left["personalization"]
    assert member.split(" ")[2] == str(3 - first)
    # a purge whose latest step is recent may still be in progress: not taken over
    assert store.finish_purges() == {} and held(r, sid) == left
    done = store.finish_purges(stall_ms=0)
    assert done == {"personalization": left["personalization"]}
    assert held(r, sid) == {"account_security": 8} and r.zcard(pending) == 0
    assert store.finish_purges(stall_ms=0) == {}  # nothing twice
    # every serving process runs the sweep
    assert [j for j in app.extensions["gateway"].jobs if j.name == "purges"]


def test_a_new_grant_bounds_its_purpose_in_a_pending_purge(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subject grants the purpose again before the sweep came: what was stored before
    the withdrawal still goes, what the new grant stores stays (the record bounds the purpose
    by its stream's newest id at the grant)."""
    store = app.extensions["gateway"].store
    sid, token = _left_between_steps(app, client, monkeypatch)
    left = held(r, sid)
    consent(client, token, personalization=True)
    [member] = r.zrange(store.keys.purges(sid), 0, -1)
    assert " personalization<=" in member
    send(client, token, 2)
    assert store.finish_purges(stall_ms=0) == {"personalization": left["personalization"]}
    assert held(r, sid) == {"personalization": 2, "account_security": 10}
    assert r.zcard(store.keys.purges(sid)) == 0


def test_a_grant_that_counts_for_nothing_does_not_keep_what_the_purge_had_left(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grant under an earlier policy version is recorded but stores nothing (the purpose
    changed since): the purge still takes all that was stored before the withdrawal."""
    store = app.extensions["gateway"].store
    sid, token = _left_between_steps(app, client, monkeypatch)
    resp = client.post(
        "/v1/consent",
        json={"policy_version": "2018-02-04", "purposes": {"personalization": True}},
        headers={"X-Subject": token},
    )
    assert resp.status_code == 201, resp.get_json()
    store.finish_purges(stall_ms=0)
    assert held(r, sid) == {"account_security": 8}


def test_the_withdrawals_own_gateway_goes_on_when_a_grant_bounded_one_purpose(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grant of one of two purposes while the withdrawal's steps run does not stop them:
    each step works from the record as it is then, so the other purpose is all gone before
    the answer, and the granted one up to the grant."""
    store = app.extensions["gateway"].store
    sid, token = _left_between_steps(
        app, client, monkeypatch, ("personalization", "account_security")
    )
    [member] = r.zrange(store.keys.purges(sid), 0, -1)
    consent(client, token, personalization=True)
    send(client, token, 2)  # personalization only: account_security stays withdrawn
    # the withdrawal's gateway takes its next steps now, from the rank its record holds
    purge = storage_consent.Purge.parse(member)
    assert purge is not None
    assert store._purge_rest(purge, {}, claim=None) == -1
    assert held(r, sid) == {"personalization": 2}
    assert r.zcard(store.keys.purges(sid)) == 0


def test_another_withdrawal_takes_a_pending_purge_into_its_own(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two purges of one subject walking its index at once would move each other's cursor
    (a deletion below it shifts the ranks): the second takes the first in, from rank 0."""
    store = app.extensions["gateway"].store
    sid, token = _left_between_steps(app, client, monkeypatch)
    answer = consent(client, token, account_security=False)
    assert answer["deleted"] == {"account_security": 8}  # its own withdrawal's count
    assert held(r, sid) == {} and r.zcard(store.keys.purges(sid)) == 0


def test_a_record_taken_into_a_later_withdrawal_is_named_anew(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merged record's name is later than the one it replaces, even when the store's
    clock reads earlier (the same millisecond, a clock stepped back): the replaced purge's
    gateway must find its record gone and the later one named after it, which it then steps
    through too."""
    store = app.extensions["gateway"].store
    sid, token = _left_between_steps(app, client, monkeypatch)
    pending = store.keys.purges(sid)
    [member] = r.zrange(pending, 0, -1)
    _, at, rank, purposes = member.split(" ", 3)
    ahead = int(at) + 3_600_000  # as if named an hour from now by the store's clock
    r.zrem(pending, member)
    r.zadd(pending, {f"{sid} {ahead} {rank} {purposes}": 1})
    _withdraw_and_die(app, client, token, ("account_security",))
    [merged] = r.zrange(pending, 0, -1)
    assert int(merged.split(" ")[1]) == ahead + 1
    assert merged.split(" ")[3:] == ["account_security", "personalization"]
    store.finish_purges(stall_ms=0)
    assert held(r, sid) == {} and r.zcard(pending) == 0


def test_a_withdrawal_whose_purge_a_later_one_took_in_answers_once_its_data_went(
    app: Flask,
    client: FlaskClient,
    r: redis.Redis,
    redis_url: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between gateway A's steps of a withdrawal, the subject withdraws another purpose
    through gateway B, which takes A's purge into its own record (from rank 0) and dies
    after its first step. A finds its record gone and carries on with the later one: it
    answers 201 only once both purposes' data went (found by review: it answered at once,
    its purpose's entries left for the sweep a minute later, its count short)."""
    monkeypatch.setattr(storage_consent, "PURGE_STEP", 3)
    other = create_app(make_config(redis_url, tmp_path / "b"))
    try:
        sid, token = app_subject(client, personalization=True, account_security=True)
        send(client, token, 8)
        a_store = app.extensions["gateway"].store
        b_store = other.extensions["gateway"].store
        real = a_store._purge_script
        b_answers: list[int] = []

        def b_dies(**_: Any) -> Any:
            raise RedisConnectionError("gateway B died here")

        def a_step(**kw: Any) -> Any:
            if not b_answers:  # before A's second step: B's withdrawal, which dies
                b_store._purge_script = b_dies
                resp = other.test_client().post(
                    "/v1/consent",
                    json={"policy_version": CURRENT, "purposes": {"account_security": False}},
                    headers={"X-Subject": token},
                )
                b_answers.append(resp.status_code)
            return real(**kw)

        a_store._purge_script = a_step
        answer = consent(client, token, personalization=False)
        assert b_answers == [503]
        assert held(r, sid) == {} and r.zcard(a_store.keys.purges(sid)) == 0
        assert set(answer["deleted"]) == {"personalization"}  # its own purpose's count
        assert 1 <= answer["deleted"]["personalization"] <= 8
    finally:
        for close in other.extensions["gateway"].closers:
            close()


def test_a_record_the_scripts_fail_on_does_not_end_the_sweep_for_the_others(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending purge whose subject's index is not a sorted set (a store edited by hand, a
    bug of another version): the script fails on it, the sweep says so and goes on to the
    groups after it (found by review: one record ended every sweep, for every group)."""
    store = app.extensions["gateway"].store
    sid, _ = _left_between_steps(app, client, monkeypatch)
    groups = store.keys.all_purges()
    while True:  # a subject whose group is swept before sid's
        broken, _ = app_subject(client, personalization=True)
        if groups.index(store.keys.purges(broken)) < groups.index(store.keys.purges(sid)):
            break
    r.set(store.keys.index(broken), "not an index")
    member = f"{broken} 1 0 personalization"
    r.zadd(store.keys.purges(broken), {member: 0})
    assert store.finish_purges(stall_ms=0)["personalization"] > 0
    assert held(r, sid) == {"account_security": 8}
    assert r.zrange(store.keys.purges(broken), 0, -1) == [member]  # left, said each sweep


def test_a_record_stamped_ahead_of_the_stores_clock_is_claimed(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record's score is the store's clock at its latest step: after the clock stepped
    back (or a failover to a replica whose clock is behind) it lies ahead, and a record an
    hour ahead is not one in progress: the sweep takes it (found by review: it waited out
    the hour). One stamped now still is in progress."""
    store = app.extensions["gateway"].store
    sid, _ = _left_between_steps(app, client, monkeypatch)
    pending = store.keys.purges(sid)
    [member] = r.zrange(pending, 0, -1)
    r.zadd(pending, {member: int(time.time() * 1000) + 3_600_000})
    assert store.finish_purges()["personalization"] > 0  # the usual stall: a minute
    assert held(r, sid) == {"account_security": 8} and r.zcard(pending) == 0


def test_a_withdrawal_deletes_entries_whatever_their_ids_say_of_the_time(
    client: FlaskClient, r: redis.Redis
) -> None:
    """Stream ids run ahead of the store's clock after it stepped back (or a failover to a
    replica whose clock is behind): the withdrawal still deletes what the index names."""
    sid, token = app_subject(client, personalization=True, account_security=True)
    stream = next(s for s in K.streams("personalization") if s.startswith(K.tag(sid)))
    future = int(time.time() * 1000) + 30_000
    r.xadd(stream, {"sid": "0" * 32, "n": 0, "events": "[]"}, id=f"{future}-0")
    send(client, token, 3)
    answer = consent(client, token, personalization=False)
    assert answer["deleted"] == {"personalization": 3}
    assert held(r, sid) == {"account_security": 3}


def test_an_erasure_takes_the_subjects_pending_purge_with_it(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record names the subject, and an erasure leaves nothing of it to purge."""
    store = app.extensions["gateway"].store
    sid, _ = _left_between_steps(app, client, monkeypatch)
    other = store.keys.purges(sid)
    r.zadd(other, {"someone-else 1 personalization": 1})
    store.erase_subject(sid)
    assert held(r, sid) == {}
    assert r.zrange(other, 0, -1) == ["someone-else 1 personalization"]


def test_records_it_cannot_read_are_left_as_they_are(
    app: Flask, client: FlaskClient, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By the sweep, and by the subject's consent writes (a record of another format named
    after the subject must not fail its withdrawal, whose purge here takes several steps)."""
    store = app.extensions["gateway"].store
    monkeypatch.setattr(storage_consent, "PURGE_STEP", 3)
    sid, token = app_subject(client, personalization=True, account_security=True)
    send(client, token, 8)
    name = store.keys.purges(sid)
    odd = ["not-a-purge", f"{sid} 1² 0 personalization", f"{sid} 12 personalization"]
    odd.append(f"{sid} 1 100000000000000000000 personalization")  # past a double's digits
    r.zadd(name, dict.fromkeys(odd, 0))
    assert store.finish_purges(stall_ms=0) == {}
    answer = consent(client, token, personalization=False)
    assert answer["deleted"] == {"personalization": 8}
    assert held(r, sid) == {"account_security": 8}
    assert sorted(r.zrange(name, 0, -1)) == sorted(odd)
