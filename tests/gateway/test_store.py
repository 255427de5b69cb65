"""Storage failures and storage guarantees, with real server processes of the tests' own.

(a) a server that stops (SIGTERM) or dies (SIGKILL): fast 503s, nothing partial, and the same
    gateway object recovers by itself once a server is back on the same port and data;
(b) a server that hangs (SIGSTOP): 503 within the socket timeout, recovery after SIGCONT;
(c) Debian's Redis 7.0, which has no WAITAOF: consent still works, and /healthz says that the
    fsync is unconfirmed; Valkey says "waitaof";
(d) dedup by event_id: twice in a row, twice in one request, after a lost answer (to the
    client, and between the gateway and the server), and under concurrent retries;
(e) concurrent consent writes for one subject: the ledger's hash chain stays intact and holds
    exactly one entry per 201 answer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from gateway.core.errors import StorageUnavailable
from gateway.core.parts import EventPart
from gateway.storage import entry_events
from tests.helpers import CURRENT, K, grant, page_view, stream_events

pytestmark = pytest.mark.stores  # the storage tests run on every kind of store

OPTIONAL = ("account_security", "precise_location", "saved_login", "personalization", "advertising")
ALL = dict.fromkeys(OPTIONAL, True)
GIF_LEN = 43
FAST = 5.0  # seconds: an unavailable store must cost no more than this per request


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    resp = call()
    return resp, time.monotonic() - start


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def healthy(client: FlaskClient) -> bool:
    return client.get("/healthz").status_code == 200


def entries_with(r: redis.Redis, event_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every stored part (stream key, part) of ``event_id``."""
    return [(key, part) for key, _, part in stream_events(r) if part["event_id"] == event_id]


def unavailable(resp: Any, elapsed: float, what: str) -> None:
    """A JSON 503 ``storage_unavailable``, answered fast."""
    assert elapsed < FAST, f"{what} took {elapsed:.1f} s"
    assert resp.status_code == 503, (what, resp.status_code, resp.get_data(as_text=True))
    assert resp.mimetype == "application/json", what
    err = resp.get_json()["error"]
    assert err["code"] == "storage_unavailable", (what, err)
    assert err["message"], what
    assert resp.headers.get("Retry-After"), what


def pixel_unavailable(resp: Any, elapsed: float) -> None:
    assert elapsed < FAST, f"pixel took {elapsed:.1f} s"
    assert resp.status_code == 503
    assert resp.mimetype == "image/gif"
    assert len(resp.data) == GIF_LEN
    assert resp.headers.get("X-Error-Code") == "storage_unavailable"
    assert "no-store" in resp.headers["Cache-Control"]


def health_unavailable(resp: Any, elapsed: float) -> None:
    assert elapsed < FAST, f"/healthz took {elapsed:.1f} s"
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] != "ok"
    assert body["storage"].startswith("unavailable")


def outage_requests(client: FlaskClient) -> dict[str, Callable[[], Any]]:
    """The requests a store outage must answer fast, each as a callable."""
    return {
        "POST /v1/consent": lambda: client.post(
            "/v1/consent", json={"policy_version": CURRENT, "purposes": {"advertising": False}}
        ),
        "DELETE /v1/consent": lambda: client.delete("/v1/consent"),
        "POST /v1/events": lambda: client.post(
            "/v1/events", json=page_view(event_id="during-the-outage-1", title="outage")
        ),
        "GET /v1/consent": lambda: client.get("/v1/consent"),
        "GET /p.gif": lambda: client.get("/p.gif?type=search&keyword=bolt&event_id=pixel-outage-1"),
        "GET /healthz": lambda: client.get("/healthz"),
    }


def check_outage_answer(name: str, resp: Any, elapsed: float) -> None:
    if name == "GET /p.gif":
        pixel_unavailable(resp, elapsed)
    elif name == "GET /healthz":
        health_unavailable(resp, elapsed)
    else:
        unavailable(resp, elapsed, name)


def check_recovered(client: FlaskClient, r: redis.Redis) -> None:
    """After an outage: the same gateway writes consent and events again, and they are kept."""
    resp = client.post(
        "/v1/consent", json={"policy_version": CURRENT, "purposes": {"advertising": False}}
    )
    assert resp.status_code == 201, resp.get_json()
    assert client.get("/v1/consent").get_json()["purposes"]["advertising"]["granted"] is False
    # the client retries the event that got a 503 during the outage: now it is stored
    resp = client.post("/v1/events", json=page_view(event_id="during-the-outage-1", title="outage"))
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["stored"] == 1
    assert {f["title"] for _, f in entries_with(r, "during-the-outage-1") if "title" in f} == {
        "outage"
    }
    resp = client.get("/p.gif?type=search&keyword=bolt&event_id=pixel-outage-1")
    assert resp.status_code == 200
    assert entries_with(r, "pixel-outage-1")
    history = client.get("/v1/consent/history").get_json()
    assert history["chain"]["intact"], history["chain"]


# ---------------------------------------------------------------------------- (a) stopped
@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_stopped_server_gives_fast_503s_and_the_gateway_recovers_on_restart(
    servers, gateways, snap, how
):
    server = servers.valkey("outage")
    port = server.port
    app = gateways(server.connection_url)
    client = app.test_client()
    grant(client, **ALL)
    first = client.post("/v1/events", json=page_view(event_id="before-the-outage"))
    assert first.get_json()["stored"] == 1

    probe = redis.Redis.from_url(server.connection_url, decode_responses=True)
    before = snap(probe)
    assert entries_with(probe, "before-the-outage")
    probe.close()

    if how == "SIGTERM":
        server.stop()
    else:
        server.terminate()  # SIGKILL: no shutdown, no final fsync

    for name, call in outage_requests(client).items():
        resp, elapsed = timed(call)
        check_outage_answer(name, resp, elapsed)

    again = servers.valkey("outage", port=port)  # same port, same data directory
    assert again.port == port
    wait_until(lambda: healthy(client), what="/healthz 200 after the restart")

    probe = redis.Redis.from_url(again.connection_url, decode_responses=True)
    try:
        # what was acknowledged survived, and nothing of the refused requests was stored
        assert snap(probe) == before
        check_recovered(client, probe)
    finally:
        probe.close()


# ---------------------------------------------------------------------------- (b) hung
@pytest.mark.slow
def test_hung_server_gives_503s_within_the_timeout_and_the_gateway_recovers(
    servers, gateways, snap
):
    server = servers.valkey("hung")
    app = gateways(server.connection_url)
    client = app.test_client()
    grant(client, **ALL)
    assert client.post("/v1/events", json=page_view()).get_json()["stored"] == 1
    probe = redis.Redis.from_url(server.connection_url, decode_responses=True)
    before = snap(probe)
    vid = client.get_cookie("_vid").value

    pid = server._process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # all at once, each from a browser of its own with the same subject cookie
        def run(name: str) -> tuple[str, Any, float]:
            own = app.test_client()
            own.set_cookie("_vid", vid)
            resp, elapsed = timed(outage_requests(own)[name])
            return name, resp, elapsed

        names = list(outage_requests(client))
        with ThreadPoolExecutor(len(names)) as pool:
            results = list(pool.map(run, names))
    finally:
        os.kill(pid, signal.SIGCONT)

    for name, resp, elapsed in results:
        check_outage_answer(name, resp, elapsed)

    wait_until(lambda: healthy(client), what="/healthz 200 after SIGCONT")
    try:
        assert snap(probe) == before
        check_recovered(client, probe)
    finally:
        probe.close()


# ---------------------------------------------------------------------------- (c) WAITAOF
def test_redis_70_without_waitaof_stores_consent_and_reports_unconfirmed_fsync(servers, gateways):
    _, url = servers.debian_redis()
    probe = redis.Redis.from_url(url, decode_responses=True)
    assert probe.info("server")["redis_version"].startswith("7.0.")
    with pytest.raises(redis.ResponseError):
        probe.execute_command("WAITAOF", 1, 0, 100)

    app = gateways(url)
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["consent_durability"] == "unknown"  # nothing written yet

    grant(client, personalization=True, advertising=True)
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["consent_durability"] == "aof-unconfirmed"

    # later writes (no WAITAOF sent any more) and reads work as on any server
    grant(client, advertising=False)
    state = client.get("/v1/consent").get_json()["purposes"]
    assert state["personalization"]["granted"] is True
    assert state["advertising"]["granted"] is False
    history = client.get("/v1/consent/history").get_json()
    assert len(history["entries"]) == 2
    assert history["chain"]["intact"]
    sid = history["entries"][0]["subject"]
    assert probe.llen(K.ledger(sid)) == 2
    assert probe.config_get("appendonly")["appendonly"] == "yes"
    resp = client.post("/v1/events", json=page_view(event_id="on-redis-7.0"))
    assert resp.status_code == 202 and resp.get_json()["stored"] == 1
    assert entries_with(probe, "on-redis-7.0")
    assert client.get("/healthz").get_json()["consent_durability"] == "aof-unconfirmed"
    probe.close()


def test_valkey_reports_waitaof_durability(servers, gateways):
    server = servers.valkey("durable")
    client = gateways(server.connection_url).test_client()
    assert client.get("/healthz").get_json()["consent_durability"] == "unknown"
    grant(client, personalization=True)
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["consent_durability"] == "waitaof"


# ---------------------------------------------------------------------------- (d) dedup
def _stored_once(r: redis.Redis, event_id: str, purposes: set[str]) -> None:
    found = entries_with(r, event_id)
    keys = [key for key, _ in found]
    assert len(keys) == len(set(keys)) == len(purposes), found
    assert {key.split(":ev:", 1)[1] for key in keys} == purposes


@pytest.fixture
def granted(client: FlaskClient) -> FlaskClient:
    grant(client, personalization=True, account_security=True)
    return client


@pytest.mark.stores
def test_same_event_id_posted_twice_is_stored_once(granted, r):
    ev = page_view()
    first = granted.post("/v1/events", json=ev).get_json()
    assert (first["stored"], first["duplicates"]) == (1, 0)
    second = granted.post("/v1/events", json=ev)
    assert second.status_code == 202
    assert (second.get_json()["stored"], second.get_json()["duplicates"]) == (0, 1)
    _stored_once(r, ev["event_id"], {"personalization", "account_security"})


@pytest.mark.stores
def test_same_event_id_twice_in_one_request_is_stored_once(granted, r):
    ev = page_view()
    other = page_view()
    resp = granted.post("/v1/events", json={"events": [ev, other, dict(ev, title="changed")]})
    assert resp.status_code == 202
    body = resp.get_json()
    assert (body["accepted"], body["stored"], body["duplicates"]) == (3, 2, 1)
    _stored_once(r, ev["event_id"], {"personalization", "account_security"})
    _stored_once(r, other["event_id"], {"personalization", "account_security"})
    titles = {f.get("title") for _, f in entries_with(r, ev["event_id"])} - {None}
    assert titles == {ev["title"]}  # the first one wins


@pytest.mark.stores
def test_a_retried_batch_stores_only_what_is_new(granted, r):
    a, b, c = page_view(), page_view(), page_view()
    assert granted.post("/v1/events", json={"events": [a, b]}).get_json()["stored"] == 2
    body = granted.post("/v1/events", json={"events": [a, b, c]}).get_json()
    assert (body["stored"], body["duplicates"]) == (1, 2)
    for ev in (a, b, c):
        _stored_once(r, ev["event_id"], {"personalization", "account_security"})


def _part(ev_id: str, url: str = "https://shop.example.com/") -> EventPart:
    data = {"event_id": ev_id, "type": "page_view", "ts": "2026-11-25T00:00:00.000+00:00"}
    return ("personalization", json.dumps({**data, "url": url}).encode())


def _sid(client: FlaskClient) -> str:
    return client.get_cookie("_vid").value.split(".")[0]


@pytest.mark.stores
def test_dedup_ids_older_than_the_window_are_dropped_and_can_be_stored_again(
    granted, r, app, monkeypatch
):
    store, min_grant = app.extensions["gateway"].store, app.extensions["gateway"].min_grant
    sid, day = _sid(granted), 86_400_000
    t0 = 1_790_000_000_123  # 15 digits once scaled by 64: the trim bound must stay exact
    assert store.store_events(sid, [("old-event-1", [_part("old-event-1")])], min_grant, t0) == [
        ("personalization",)
    ]
    monkeypatch.setattr("gateway.storage.events.TRIM_DEDUP_SHARE", 1.0)
    # Within the window: still a duplicate, and nothing is trimmed.
    later = t0 + day - 1
    assert store.store_events(sid, [("old-event-1", [_part("old-event-1")])], min_grant, later) == [
        None
    ]
    assert r.zscore(store.keys.dedup(sid), "old-event-1") == t0 * 64 + 1
    # Still kept through the hour of slack for gateways' clocks...
    slack = t0 + day + 3_600_000
    assert store.store_events(sid, [("old-event-1", [_part("old-event-1")])], min_grant, slack) == [
        None
    ]
    # ...then forgotten (trimmed exactly at the bound) and stored again.
    after = slack + 1
    ids = [("old-event-1", [_part("old-event-1")]), ("new-event-1", [_part("new-event-1")])]
    assert store.store_events(sid, ids, min_grant, after) == [("personalization",)] * 2
    assert r.zscore(store.keys.dedup(sid), "old-event-1") == after * 64 + 1


@pytest.mark.stores
def test_dedup_set_lives_a_window_past_each_write_and_the_index_is_renewed_once_a_window(
    granted, r, app
):
    svc = app.extensions["gateway"]
    store, sid, day = svc.store, _sid(granted), 86_400_000
    index_life = store.lifetimes.index_ms + 2 * day
    now = int(time.time() * 1000)
    store.store_events(sid, [("ttl-event-1", [_part("ttl-event-1")])], svc.min_grant, now)
    assert int(r.hget(store.keys.consent(sid), "renew_at")) == now + day
    assert index_life - 60_000 < r.pttl(store.keys.index(sid)) <= index_life
    r.pexpire(store.keys.dedup(sid), 1_000_000)  # as if most of their life had passed
    r.pexpire(store.keys.index(sid), 1_000_000)
    store.store_events(sid, [("ttl-event-2", [_part("ttl-event-2")])], svc.min_grant, now + 1)
    assert day - 60_000 < r.pttl(store.keys.dedup(sid)) <= day  # every write: a window more
    assert r.pttl(store.keys.index(sid)) <= 1_000_000  # not renewed within the window
    store.store_events(sid, [("ttl-event-3", [_part("ttl-event-3")])], svc.min_grant, now + day)
    assert r.pttl(store.keys.index(sid)) > index_life - 60_000  # renewed a window later
    assert int(r.hget(store.keys.consent(sid), "renew_at")) == now + 2 * day


@pytest.mark.stores
def test_pixel_ids_minted_by_the_gateway_leave_no_dedup_set_without_a_lifetime(client, r):
    """A minted-id beacon renews nothing it did not write; a later event id still expires."""
    grant(client, personalization=True)
    assert client.get("/p.gif?url=https%3A%2F%2Fshop.example.com%2F").status_code == 200
    assert client.post("/v1/events", json=page_view()).get_json()["stored"] == 1
    [dedup] = list(r.scan_iter("*:s:*:dedup"))
    assert 0 < r.pttl(dedup) <= 86_400_000


class LoseReply:
    """Runs the real script, then acts as if its reply was lost on the wire (a fault a real
    server cannot be asked for on cue; ReplyDropper below does it over TCP for the views)."""

    def __init__(self, script: Any, before_retry: Callable[[], None] = lambda: None) -> None:
        self.script, self.before_retry, self.calls = script, before_retry, []

    def __call__(self, *, keys: Any, args: Any, client: Any) -> Any:
        self.calls.append(list(args))
        answer = self.script(keys=keys, args=args, client=client)
        if len(self.calls) == 1:
            self.before_retry()
            raise redis.ConnectionError("reply lost")
        return answer


@pytest.mark.stores
def test_a_lost_reply_then_a_consent_change_still_answers_what_was_stored(granted, r, app):
    svc = app.extensions["gateway"]
    store, sid = svc.store, _sid(granted)
    head = r.hget(store.keys.consent(sid), "head")
    lose = LoseReply(store._group._script, lambda: grant(granted, advertising=True))
    store._group._script = lose
    now = int(time.time() * 1000)
    out = store.store_events(sid, [("lost-1", [_part("lost-1")])], svc.min_grant, now, head[:16])
    assert out == [("personalization",)]  # stored by the first attempt, and said so
    # ("t", trimming old dedup ids, is drawn at random on one write in 16)
    assert [c[4].replace("t", "") for c in lose.calls] == ["", "r"]
    assert len(entries_with(r, "lost-1")) == 1


@pytest.mark.stores
def test_a_resend_sharing_an_id_and_a_millisecond_with_another_request_loses_nothing(
    granted, r, app
):
    """Request A stores x; request B of the same subject, in the same millisecond (the
    gateway's clock), sends x again with a new y: its call answers x a duplicate, stores
    nothing, and its reply is lost. Its resend must store y. (Found by review: the resend
    took x, remembered at its own time, for proof that its first attempt stored, and answered
    y unconsented: y was lost, and the 202 said so.)"""
    svc = app.extensions["gateway"]
    store, sid = svc.store, _sid(granted)
    now = int(time.time() * 1000)
    assert store.store_events(sid, [("shared-x", [_part("shared-x")])], svc.min_grant, now) == [
        ("personalization",)
    ]
    lose = LoseReply(store._group._script)
    store._group._script = lose
    both = [("shared-x", [_part("shared-x")]), ("new-y", [_part("new-y")])]
    assert store.store_events(sid, both, svc.min_grant, now) == [None, ("personalization",)]
    assert len(entries_with(r, "new-y")) == 1 and len(entries_with(r, "shared-x")) == 1
    # the lost call (a duplicate: nothing stored), its resend (the same answer), then y alone
    assert [c[4].replace("t", "") for c in lose.calls] == ["", "r", ""]


@pytest.mark.stores
def test_a_resend_answers_what_its_first_attempt_stored_and_nothing_else(granted, r, app):
    """A lost reply of a write that stored x (and y, unconsented, not): the resend answers
    x stored and y unconsented, and stores nothing again."""
    svc = app.extensions["gateway"]
    store, sid = svc.store, _sid(granted)
    lose = LoseReply(store._group._script)
    store._group._script = lose
    now = int(time.time() * 1000)
    ad = ("advertising", b'{"event_id":"unconsented-y","type":"page_view"}')
    out = store.store_events(
        sid, [("stored-x", [_part("stored-x")]), ("unconsented-y", [ad])], svc.min_grant, now
    )
    assert out == [("personalization",), ()]
    assert [c[4].replace("t", "") for c in lose.calls] == ["", "r"]
    assert len(entries_with(r, "stored-x")) == 1 and entries_with(r, "unconsented-y") == []
    assert store.dedup_count(sid) == 1  # stored-x, not unconsented-y
    assert r.zcard(store.keys.attempts(sid)) == 1


@pytest.mark.stores
def test_a_subjects_attempts_are_kept_an_hour_by_the_stores_clock(granted, r, app):
    """The attempt each storing write remembers is needed only until its own resend (the
    same request, seconds later): each write drops those older than an hour by the store's
    clock, and the set lapses an hour after the last one, so that a visitor posting one event
    at a time does not hold one more member a request in its dedup set all day. A gateway
    whose clock runs an hour ahead drops nobody's fresh attempt (found by review)."""
    svc = app.extensions["gateway"]
    store, sid = svc.store, _sid(granted)
    attempts = store.keys.attempts(sid)
    t0 = int(time.time() * 1000)
    store.store_events(sid, [("first-id", [_part("first-id")])], svc.min_grant, t0)
    store.store_events(
        sid, [("minted-id", [_part("minted-id")])], svc.min_grant, t0, minted_ids=True
    )
    assert r.zcard(attempts) == 1  # minted ids are never sent again
    assert 3_500_000 < r.pttl(attempts) <= 3_600_000
    r.zadd(attempts, {"an-old-one": t0 - 3_700_000})  # as if written over an hour ago
    ahead = t0 + 3_600_001  # a gateway whose clock is an hour and a millisecond ahead
    store.store_events(sid, [("later-id", [_part("later-id")])], svc.min_grant, ahead)
    held = dict(r.zrange(attempts, 0, -1, withscores=True))
    assert len(held) == 2 and "an-old-one" not in held  # the first write's stays
    assert all(abs(score - time.time() * 1000) < 60_000 for score in held.values())
    assert r.zcard(store.keys.dedup(sid)) == 2  # the ids stay their window


@pytest.mark.stores
def test_a_resend_beside_a_gateway_an_hour_ahead_still_answers_what_it_stored(granted, r, app):
    """Between a lost reply and its resend, another gateway whose clock runs an hour ahead
    stores an event of the same subject: the resend still finds its attempt (found by
    review: it was trimmed by that gateway's clock, and the stored event answered a
    duplicate)."""
    svc = app.extensions["gateway"]
    store, sid = svc.store, _sid(granted)
    now = int(time.time() * 1000)
    real = store._group._script

    def other_gateway_writes() -> None:  # beside the line, which the lost call still holds
        store._group._alone = True
        try:
            store.store_events(sid, [("other", [_part("other")])], svc.min_grant, now + 3_600_001)
        finally:
            store._group._alone = False

    store._group._script = LoseReply(real, other_gateway_writes)
    out = store.store_events(sid, [("lost-x", [_part("lost-x")])], svc.min_grant, now)
    assert out == [("personalization",)]
    assert len(entries_with(r, "lost-x")) == 1


@pytest.mark.stores
def test_a_lost_reply_of_a_minted_id_write_is_not_sent_again(granted, r, app):
    svc = app.extensions["gateway"]
    store, sid = svc.store, _sid(granted)
    lose = LoseReply(store._group._script)
    store._group._script = lose
    with pytest.raises(StorageUnavailable):  # the storage layer's own error, not redis's
        store.store_events(
            sid, [("minted-1", [_part("minted-1")])], svc.min_grant, 1, minted_ids=True
        )
    assert len(lose.calls) == 1 and len(entries_with(r, "minted-1")) == 1


@pytest.mark.stores
def test_one_entry_per_request_and_purpose_holding_its_events(granted, r):
    evs = [page_view(), page_view(), page_view()]
    assert granted.post("/v1/events", json={"events": evs}).get_json()["stored"] == 3
    for family in ("personalization", "account_security"):
        keys = list(r.scan_iter(f"*:ev:{family}"))
        assert len(keys) == 1
        [(_, fields)] = r.xrange(keys[0])
        assert fields["n"] == "3" and fields["sid"] == _sid(granted)
        assert [e["event_id"] for e in json.loads(fields["events"])] == [e["event_id"] for e in evs]
    # The request's context is stored once per entry, not in every part...
    [(_, security)] = r.xrange(next(r.scan_iter("*:ev:account_security")))
    assert json.loads(security["context"])["ip"] == "127.0.0.1"
    assert all(set(e) == {"event_id", "type", "ts"} for e in json.loads(security["events"]))
    # ...and a reader gets every part with it.
    assert [e["ip"] for e in entry_events(security)] == ["127.0.0.1"] * 3


def test_a_parts_own_value_wins_over_its_entrys_context():
    fields = {
        "events": json.dumps([{"event_id": "a", "gps": {"lat": 1, "lon": 2}}, {"event_id": "b"}]),
        "context": json.dumps({"gps": {"lat": 3, "lon": 4}, "carrier": "中国移动"}),
    }
    assert entry_events(fields) == [
        {"event_id": "a", "gps": {"lat": 1, "lon": 2}, "carrier": "中国移动"},
        {"event_id": "b", "gps": {"lat": 3, "lon": 4}, "carrier": "中国移动"},
    ]
    assert entry_events({"events": "[]", "context": "{}"}) == []
    assert entry_events({"events": "{}"}) == []  # not an array: no parts


@pytest.mark.stores
def test_event_id_is_deduplicated_per_subject(app, r):
    """Two browsers may make the same id: each one's event is its own."""
    one, two = app.test_client(), app.test_client()
    grant(one, personalization=True)
    grant(two, personalization=True)
    ev = page_view()
    assert one.post("/v1/events", json=ev).get_json()["stored"] == 1
    assert two.post("/v1/events", json=ev).get_json()["stored"] == 1
    assert len(entries_with(r, ev["event_id"])) == 2


@pytest.mark.stores
def test_event_retried_after_its_answer_was_lost_is_stored_once(granted, r, serve, app):
    """Over real HTTP: the client sends, hangs up before the answer, then sends again."""
    live = serve(app)
    vid = granted.get_cookie("_vid").value
    ev = page_view()
    body = json.dumps(ev).encode()
    request = (
        f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Cookie: _vid={vid}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
    # the answer is never read; the gateway still did its work
    wait_until(lambda: bool(entries_with(r, ev["event_id"])), what="the first send stored")

    retry = granted.post("/v1/events", json=ev)
    assert retry.status_code == 202
    assert retry.get_json()["duplicates"] == 1
    _stored_once(r, ev["event_id"], {"personalization", "account_security"})


@pytest.mark.stores
def test_concurrent_retries_of_one_event_store_it_once(granted, r, app):
    vid = granted.get_cookie("_vid").value
    ev = page_view()
    barrier = threading.Barrier(12)

    def send(_: int) -> dict[str, Any]:
        own = app.test_client()
        own.set_cookie("_vid", vid)
        barrier.wait()
        resp = own.post("/v1/events", json=ev)
        assert resp.status_code == 202
        return resp.get_json()

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send, range(12)))
    assert sum(a["stored"] for a in answers) == 1
    assert sum(a["duplicates"] for a in answers) == 11
    _stored_once(r, ev["event_id"], {"personalization", "account_security"})


class ReplyDropper:
    """A TCP relay in front of a server that, once armed, loses the server's next answer.

    It forwards the first client write containing ``marker`` to the server, lets the server
    run it, and then cuts both connections before the reply reaches the client: the command
    ran, and its caller only sees a dropped connection. A real server cannot be made to do
    this on cue; the relay and the server behind it are real sockets and a real process.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.dropped = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes) -> None:
        with self._lock:
            self.marker = marker
            self.dropped.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            self._socks += [client, server]
            cut = threading.Event()  # this connection's answers are being lost
            threading.Thread(
                target=self._to_server, args=(client, server, cut), daemon=True
            ).start()
            threading.Thread(
                target=self._to_client, args=(server, client, cut), daemon=True
            ).start()

    def _to_server(
        self, client: socket.socket, server: socket.socket, cut: threading.Event
    ) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    if self.marker is not None and self.marker in data:
                        self.marker = None
                        cut.set()  # before the server can answer
                server.sendall(data)
                if cut.is_set():
                    time.sleep(0.3)  # the server runs the command; its answer goes nowhere
                    self.dropped.set()
                    break
        except OSError:
            pass
        finally:
            _close(client, server)

    def _to_client(
        self, server: socket.socket, client: socket.socket, cut: threading.Event
    ) -> None:
        try:
            while data := server.recv(65536):
                if cut.is_set():
                    continue
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, server)

    def close(self) -> None:
        self.listener.close()
        _close(*self._socks)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


@pytest.fixture
def dropper(servers: Any) -> Iterator[tuple[ReplyDropper, Any]]:
    server = servers.valkey("behind-a-relay", appendfsync="always")
    relay = ReplyDropper(server.port)
    yield relay, server
    relay.close()


def _post_losing_the_store_reply(
    relay: ReplyDropper, client: FlaskClient, ev: dict[str, Any]
) -> Any:
    grant(client, personalization=True)
    warm = client.post("/v1/events", json=page_view())  # loads the Lua scripts
    assert warm.get_json()["stored"] == 1
    relay.arm(b"EVALSHA")
    resp = client.post("/v1/events", json=ev)
    assert relay.dropped.is_set(), "the relay never cut a reply"
    return resp


def test_event_whose_store_reply_was_lost_is_stored_once(dropper, gateways):
    relay, server = dropper
    client = gateways(f"redis://127.0.0.1:{relay.port}").test_client()
    ev = page_view()
    resp = _post_losing_the_store_reply(relay, client, ev)
    # the gateway may retry by itself or answer 503 (and the client retries)
    assert resp.status_code in (202, 503), resp.get_data(as_text=True)
    probe = redis.Redis.from_url(server.connection_url, decode_responses=True)
    try:
        assert len(entries_with(probe, ev["event_id"])) == 1  # the lost-answer write happened
        retry = client.post("/v1/events", json=ev)  # the client's own retry
        assert retry.status_code == 202
        assert retry.get_json()["stored"] == 0 and retry.get_json()["duplicates"] == 1
        assert len(entries_with(probe, ev["event_id"])) == 1
    finally:
        probe.close()


def test_answer_after_a_lost_store_reply_tells_what_this_request_stored(dropper, gateways):
    """A 202 describes what the request stored: its event is not "a duplicate" of itself.

    When the gateway retries its own store call after the reply was lost, the event is found
    in the dedup set it has just been added to. The consent path recognises its own earlier
    run (by receipt id); the event path must too, or answer 503 and let the client retry.
    """
    relay, _ = dropper
    client = gateways(f"redis://127.0.0.1:{relay.port}").test_client()
    ev = page_view()
    resp = _post_losing_the_store_reply(relay, client, ev)
    if resp.status_code == 202:
        body = resp.get_json()
        assert (body["stored"], body["duplicates"]) == (1, 0), body
        assert set(body["stored_fields"]) == {"url", "title"}, body
    else:
        assert resp.status_code == 503, resp.get_data(as_text=True)


def test_consent_whose_store_reply_was_lost_is_recorded_once(dropper, gateways):
    relay, _ = dropper
    app = gateways(f"redis://127.0.0.1:{relay.port}")
    client = app.test_client()
    grant(client, personalization=True)  # loads the script, makes the subject

    relay.arm(b"EVALSHA")
    resp = client.post(
        "/v1/consent", json={"policy_version": CURRENT, "purposes": {"advertising": True}}
    )
    assert relay.dropped.is_set(), "the relay never cut a reply"
    assert resp.status_code in (201, 503), resp.get_data(as_text=True)
    history = client.get("/v1/consent/history").get_json()
    assert history["chain"]["intact"], history["chain"]
    assert len(history["entries"]) == 2, history["entries"]  # written once, not twice
    if resp.status_code == 201:
        assert resp.get_json()["receipt"]["id"] == history["entries"][-1]["id"]
        assert client.get("/v1/consent").get_json()["purposes"]["advertising"]["granted"]


# ---------------------------------------------------------------------------- (e) race
@pytest.mark.parametrize("writers", [24])
def test_concurrent_consents_for_one_subject_keep_the_chain_intact(servers, gateways, writers):
    # fsync on every write: WAITAOF answers at once, so a 503 can only mean "not written"
    server = servers.valkey("race", appendfsync="always")
    app = gateways(server.connection_url)
    first = app.test_client()
    grant(first, personalization=True)
    vid = first.get_cookie("_vid").value
    barrier = threading.Barrier(writers)

    def write(i: int) -> tuple[int, dict[str, Any], str | None]:
        own = app.test_client()
        own.set_cookie("_vid", vid)
        decisions = {
            "advertising": i % 2 == 0,
            "personalization": i % 3 == 0,
            "account_security": i % 5 == 0,
        }
        barrier.wait()
        if i % 7 == 6:
            resp = own.delete("/v1/consent?source=settings")
        else:
            resp = own.post(
                "/v1/consent",
                json={"policy_version": CURRENT, "purposes": decisions, "source": "settings"},
            )
        return resp.status_code, resp.get_json(), resp.headers.get("Retry-After")

    with ThreadPoolExecutor(writers) as pool:
        answers = list(pool.map(write, range(writers)))

    # Writers that kept losing the race are told the ledger is busy (409, try again), never
    # that the store is down (503): it is up, and nothing of theirs was written.
    statuses = [s for s, _, _ in answers]
    assert set(statuses) <= {200, 201, 409}, answers
    for status, body, retry_after in answers:
        if status == 409:
            assert body["error"]["code"] == "ledger_busy" and retry_after == "1"
    written = [body["receipt"] for status, body, _ in answers if status in (200, 201)]
    assert written, "no write succeeded"

    history = first.get("/v1/consent/history").get_json()
    assert history["chain"]["intact"], history["chain"]
    entries = history["entries"]
    assert len(entries) == 1 + len(written)  # the first grant, then one per success
    ids = [e["id"] for e in entries]
    assert len(set(ids)) == len(ids)
    assert {w["id"] for w in written} <= set(ids)
    for earlier, later in itertools.pairwise(entries):
        assert later["prev"] == earlier["hash"]

    # the state is the last entry's decisions
    last = entries[-1]["purposes"]
    state = first.get("/v1/consent").get_json()["purposes"]
    for purpose in ("advertising", "personalization", "account_security"):
        assert state[purpose]["granted"] is bool(last.get(purpose, False)), (purpose, last)

    # every receipt handed out still verifies against the ledger
    for receipt in written:
        check = first.post("/v1/consent/verify", json=receipt).get_json()
        assert check["valid"], check


# ---------------------------------------------------------------------------- (f) lifetimes
DAY_MS = 86_400_000
BARE = 395 * DAY_MS  # the necessary purpose's retention: the _vid cookie's life
HOLDING = (395 + 1_095) * DAY_MS  # the longest retention, plus the ledger's proof period


def _ttls(r: redis.Redis, sid: str) -> dict[str, int]:
    return {kind: r.pttl(K.subject(sid, kind)) for kind in ("consent", "ledger")}


def _near(value: int, expected: int) -> bool:
    return expected - 60_000 <= value <= expected


@pytest.mark.stores
def test_a_subject_that_grants_nothing_and_holds_nothing_ends(
    client: FlaskClient, r: redis.Redis
) -> None:
    refusal = grant(client)  # the banner's "reject all"
    sid = refusal["receipt"]["subject"]
    assert all(_near(t, BARE) for t in _ttls(r, sid).values()), _ttls(r, sid)
    grant(client, personalization=True)  # may hold data now: its proof is kept longer
    assert all(_near(t, HOLDING) for t in _ttls(r, sid).values()), _ttls(r, sid)
    # A withdrawal never shortens it: data collected under the grant (mail sent under
    # advertising, say, which no index tracks) keeps its proof, the withdrawal included.
    client.delete("/v1/consent")
    assert all(_near(t, HOLDING) for t in _ttls(r, sid).values()), _ttls(r, sid)


@pytest.mark.stores
def test_data_keeps_its_proof_and_events_renew_it(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    sid = client.get("/v1/subject").get_json()["subject"]
    assert client.post("/v1/events", json=page_view()).get_json()["stored"] == 1
    client.delete("/v1/consent")  # withdrawn, but data collected under the grant remains
    assert all(_near(t, HOLDING) for t in _ttls(r, sid).values()), _ttls(r, sid)
    # activity renews: a later event (once a dedup window) sets the lifetimes afresh
    grant(client, personalization=True)
    for kind in ("consent", "ledger", "index"):
        r.pexpire(K.subject(sid, kind), 60_000)
    r.hset(K.consent(sid), "renew_at", 0)
    assert client.post("/v1/events", json=page_view()).get_json()["stored"] == 1
    assert all(_near(t, HOLDING) for t in _ttls(r, sid).values()), _ttls(r, sid)
    assert r.pttl(K.index(sid)) > 395 * DAY_MS


@pytest.mark.stores
def test_every_key_of_a_subject_has_an_end(client: FlaskClient, app, r: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    """Keys named for a subject, for a token or for an address all expire; the shared
    streams are trimmed by retention and the suppression lists by age (the next test); the
    audience index's shard keys are its own state, and its change stream and marks are
    emptied as it reads them (test_audience_indexer.py)."""
    svc = app.extensions["gateway"]
    grant(client, **ALL)
    sid = client.get("/v1/subject").get_json()["subject"]
    client.post("/v1/events", json=page_view(gps={"lat": 31.2, "lon": 121.5}))
    svc.logins.issue("buyer-1001", sid, 3600)
    svc.sms.new_code(sid, "13800138000")
    client.post("/v1/subjects")
    for key in r.scan_iter("*"):
        shared = any(part in key for part in (":ev:", ":suppress:", ":aud:"))
        shared = shared or key.startswith(("apikey", "gw:"))
        if not shared:
            assert r.pttl(key) > 0, key


@pytest.mark.stores
def test_suppression_lists_drop_entries_older_than_any_proof(
    client: FlaskClient, r: redis.Redis
) -> None:
    now = int(time.time() * 1000)
    sid = grant(client, advertising=False)["receipt"]["subject"]  # refusing joins every list
    key = K.suppression("email", sid)
    r.zadd(key, {"f" * 32: now - HOLDING - DAY_MS, "e" * 32: now - DAY_MS})
    grant(client, advertising=True)
    grant(client, advertising=False)  # joins again: old entries are dropped
    members = r.zrange(key, 0, -1)
    assert "f" * 32 not in members and "e" * 32 in members and len(members) == 2


# ---------------------------------------------------------------------------- (g) refusals
@pytest.mark.parametrize("refusal", ["full", "replica"])
def test_a_store_that_refuses_writes_is_a_503_not_a_500(servers, gateways, refusal) -> None:  # type: ignore[no-untyped-def]
    """Full (OOM with noeviction) or read-only (a replica after a failover): the store is up
    but takes no write, which a client must be told the way a down store is (503, retry)."""
    server = servers.valkey("refusing")
    app = gateways(server.connection_url, TESTING=False)
    client = app.test_client()
    grant(client, personalization=True)
    admin = redis.Redis.from_url(server.connection_url)
    if refusal == "full":
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
    else:
        admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # a primary that is not there
        wait_until(lambda: admin.info("replication")["role"] == "slave", what="replica role")
    reader = redis.Redis.from_url(server.connection_url, decode_responses=True)
    try:
        refusals = answered_stored = 0
        for resp in (
            client.post("/v1/consent", json={"policy_version": CURRENT, "purposes": {}}),
            client.post("/v1/events", json=page_view()),
            app.test_client().post("/v1/subjects"),
            client.get("/p.gif?type=page_view&url=https://shop.example.com/"),
        ):
            if resp.status_code == 503:
                refusals += 1
                code = resp.headers.get("X-Error-Code") or resp.get_json()["error"]["code"]
                assert code == "storage_unavailable"
                continue
            # A full store judges memory as it was before the command, at a script's first
            # write: now and then it still takes one. Never a 500, and a 2xx must be true.
            assert refusal == "full" and resp.status_code in (200, 201, 202), resp.status_code
            if resp.mimetype == "image/gif" or resp.status_code == 202:
                answered_stored += 1
        assert refusals >= (4 if refusal == "replica" else 1)
        assert len(stream_events(reader)) == answered_stored
    finally:
        reader.close()
        admin.config_set("maxmemory", 0)
        admin.execute_command("REPLICAOF", "NO", "ONE")
        admin.close()


def test_a_store_busy_with_a_long_script_is_a_503_not_a_500(servers, gateways) -> None:  # type: ignore[no-untyped-def]
    """Past ``busy-reply-threshold`` a running script makes the store answer every other
    command ``BUSY`` without running it (an erasure or a purge of a large subject can take
    that long): the store cannot serve now, which is a 503, never a 500 (found by review:
    the pixel answered 500 ``internal_error``). Once the script ends, requests are stored."""
    server = servers.valkey("busy")
    app = gateways(server.connection_url, TESTING=False)
    client = app.test_client()
    grant(client, personalization=True)
    admin = redis.Redis.from_url(server.connection_url)
    reader = redis.Redis.from_url(server.connection_url, decode_responses=True)
    admin.config_set("busy-reply-threshold", 100)
    spin = (
        "local t0 = redis.call('TIME') while true do local t = redis.call('TIME') "
        "if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 2000000 then break end end return 1"
    )
    spinner = threading.Thread(
        target=lambda: redis.Redis.from_url(server.connection_url).eval(spin, 0)
    )
    try:
        spinner.start()
        time.sleep(0.4)
        for resp in (
            client.post("/v1/consent", json={"policy_version": CURRENT, "purposes": {}}),
            client.post("/v1/events", json=page_view()),
            app.test_client().post("/v1/subjects"),
            client.get("/p.gif?type=page_view&url=https://shop.example.com/"),
        ):
            assert resp.status_code == 503, (resp.status_code, resp.get_data(as_text=True))
            code = resp.headers.get("X-Error-Code") or resp.get_json()["error"]["code"]
            assert code == "storage_unavailable"
        spinner.join(10)
        assert not spinner.is_alive()
        assert stream_events(reader) == []
        assert client.post("/v1/events", json=page_view()).status_code == 202
        assert len(stream_events(reader)) == 1
    finally:
        spinner.join(10)
        admin.config_set("busy-reply-threshold", 5000)
        admin.close()
        reader.close()
