"""TelemetryClient against the real gateway over HTTP on real Valkey."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis

from sdk_py import Backoff, DeviceInfo, GatewayRefused, GatewayUnavailable, TelemetryClient
from tests.conftest import LiveServer
from tests.sdk_py.conftest import recording

FAST = Backoff(base=0.02, cap=0.2)
ALL = {"account_security": True, "personalization": True}  # precise location: asked alone


def client(url: str, **kw) -> TelemetryClient:
    kw.setdefault("flush_interval", 0.05)
    kw.setdefault("backoff", Backoff(base=0.02, cap=0.2))
    return TelemetryClient(url, **kw)


def screens(parts: list[dict]) -> Counter:
    return Counter(p["screen"] for p in parts if "screen" in p)


# ---------------------------------------------------------------------------- consent
def test_nothing_is_queued_before_consent_and_grants_come_from_the_gateway(url, stored):
    c = client(url)
    assert c.track("screen_view", screen="before") is False
    assert c.stats.dropped_no_consent == 1
    receipt = c.grant(personalization=True)
    assert receipt["purposes"]["personalization"] is True and receipt["source"] == "app"
    assert c.state().granted == {"necessary", "personalization"}
    assert c.track("screen_view", screen="after") is True
    assert c.flush(5)
    assert screens(stored("personalization")) == Counter({"after": 1})
    c.shutdown()


def test_fields_of_refused_purposes_are_not_even_queued(url, stored):
    reads: list[str] = []
    device = DeviceInfo(
        device_model=recording(reads, "device_model", "Redmi K70"),
        device_id=recording(reads, "device_id", "id-1"),
        gps=recording(reads, "gps", {"lat": 30.0, "lon": 120.0}),
    )
    c = client(url, device=device)
    c.grant(personalization=True, account_security=False, precise_location=False)
    c.track("search", keyword="M3", gps={"lat": 1, "lon": 2})
    item = c.buffer.take(10, 1 << 20)[0]
    assert json.loads(item.context) == {}
    assert set(json.loads(item.body)) == {"event_id", "type", "ts", "keyword"}
    assert reads == []  # no device function was even called
    c.grant(account_security=True)
    c.grant(precise_location=True)  # sensitive: asked and granted on its own
    c.track("search", keyword="M4")
    assert sorted(reads) == ["device_id", "device_model", "gps"]
    assert c.flush(5)
    security = stored("account_security")
    assert [p["device_model"] for p in security if "device_model" in p] == ["Redmi K70"]
    assert [p["gps"] for p in stored("precise_location")] == [{"lat": 30.0, "lon": 120.0}]
    assert [p["keyword"] for p in stored("personalization")] == ["M3", "M4"]
    c.shutdown()


def test_withdrawal_applies_at_once_and_is_on_the_ledger(url, stored, app):
    c = client(url)
    c.grant(**ALL)
    c.grant(precise_location=True)
    c.track("screen_view", screen="a")
    assert c.flush(5)
    assert screens(stored("personalization")) == Counter({"a": 1})
    receipt = c.withdraw()
    assert receipt is not None and receipt["action"] == "withdraw"
    assert c.track("screen_view", screen="b") is False
    history = app.test_client().get("/v1/consent/history", headers={"X-Subject": c.token})
    assert [e["action"] for e in history.get_json()["entries"]] == [
        "consent",
        "consent",
        "withdraw",
    ]
    assert screens(stored("personalization")) == Counter()  # the withdrawal deleted it
    c.shutdown()


def test_a_withdrawal_made_offline_is_sent_before_any_further_event(live, url, stored):
    from tests.sdk_py.conftest import Relay

    relay = Relay(live.port)
    c = client(f"http://127.0.0.1:{relay.port}")
    c.grant(personalization=True, account_security=True)
    relay.close()  # the network is gone
    with pytest.raises(GatewayUnavailable):
        c.withdraw("account_security")
    c.track("screen_view", screen="offline")  # personalization still granted
    assert c.state(refresh=False).granted == {"necessary", "personalization"}
    c.transport.endpoint = url  # the network is back (a new route to the same gateway)
    c.transport.close()
    assert c.flush(5)
    assert screens(stored("personalization")) == Counter({"offline": 1})
    assert stored("account_security") == []  # withdrawn on the ledger before the batch
    c.shutdown()


def test_a_withdrawal_refused_for_good_is_not_kept_to_hold_back_events(url):
    c = client(url, token="forged.token")
    c.policy()
    with pytest.raises(GatewayRefused) as e:
        c.withdraw("account_security")
    assert e.value.code == "invalid_subject"
    assert c.buffer.get_meta("pending_withdraw") is None
    with pytest.raises(ValueError, match="telepathy"):
        c.withdraw("telepathy")
    c.shutdown()


# ---------------------------------------------------------------------------- batching
def test_batches_respect_count_and_bytes(url, stored, r):
    c = client(url, batch_size=40, max_batch_bytes=8 * 1024)
    c.grant(personalization=True)
    for i in range(200):
        c.track("page_view", url=f"https://shop.example.com/{i}", title="t" * 100)
    assert c.flush(10)
    entries = [int(f["n"]) for key in r.scan_iter("*:ev:personalization") for _, f in r.xrange(key)]
    assert sum(entries) == 200
    assert max(entries) <= 40
    assert all(n * 190 < 8 * 1024 for n in entries)  # every body under the byte budget
    assert c.stats.batches == len(entries) >= 200 // 40
    c.shutdown()


def test_events_are_sent_after_the_interval_without_a_flush(url, stored):
    c = client(url, flush_interval=0.1)
    c.grant(personalization=True)
    c.track("app_open", screen="home")
    deadline = time.monotonic() + 5
    while not stored("personalization") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert screens(stored("personalization")) == Counter({"home": 1})
    c.shutdown()


def test_malformed_events_are_refused_by_the_gateway_and_the_rest_stored(url, stored):
    c = client(url)
    c.grant(personalization=True)
    c.track("screen_view", screen="ok1")
    c.track("cart", action="steal", product="x")  # not an action the catalogue allows
    c.track("page_view", url="ftp://not-http")
    c.track("screen_view", screen="ok2")
    old = datetime.now(UTC) - timedelta(days=30)
    c.track("screen_view", screen="too-old", ts=old)
    assert c.flush(5)
    assert screens(stored("personalization")) == Counter({"ok1": 1, "ok2": 1})
    assert (c.stats.stored, c.stats.rejected) == (2, 3)
    c.shutdown()


def test_track_never_raises(url):
    c = client(url)
    c.grant(personalization=True)
    assert c.track("screen_view", screen=object()) is False  # cannot be encoded
    assert c.track("no_such_type", screen="x") is False
    assert c.stats.dropped_invalid == 2
    c.shutdown()


def test_a_full_buffer_drops_new_events_and_counts_them(url):
    c = client(url, max_queue=5, flush_interval=60)
    c.grant(personalization=True)
    c._stopping = True  # no consumer: the buffer only fills
    results = [c.track("screen_view", screen=str(i)) for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert c.stats.dropped_full == 3
    c.buffer.close()


# ---------------------------------------------------------------------------- retries
def test_storage_down_then_back_stores_every_event_once(servers, gateways, tmp_path):
    server = servers.valkey("sdk-outage")
    port = server.port
    live = LiveServer(gateways(server.connection_url))
    try:
        c = client(f"http://127.0.0.1:{live.port}", batch_size=25)
        c.grant(personalization=True)
        server.stop()  # the gateway answers 503 to every batch
        for i in range(100):
            assert c.track("screen_view", screen=f"s{i}")
        time.sleep(0.5)
        assert c.stats.retries >= 1 and c.stats.stored == 0
        again = servers.valkey("sdk-outage", port=port)
        assert c.flush(15)
        probe = redis.Redis.from_url(again.connection_url, decode_responses=True)
        from tests.helpers import stream_events

        counts = screens([p for _, _, p in stream_events(probe, "personalization")])
        probe.close()
        assert counts == Counter({f"s{i}": 1 for i in range(100)})
        assert c.stats.stored == 100
        c.shutdown()
    finally:
        live.close()


def test_lost_replies_are_retried_and_stored_once(url, relay, stored):
    c = client(f"http://127.0.0.1:{relay.port}", batch_size=20)
    c.grant(personalization=True)
    relay.drop_replies = 3
    for i in range(100):
        c.track("screen_view", screen=f"s{i}")
    assert c.flush(15)
    assert relay.dropped == 3
    assert screens(stored("personalization")) == Counter({f"s{i}": 1 for i in range(100)})
    assert c.stats.stored + c.stats.duplicates == 100
    assert c.stats.duplicates >= 1  # a lost batch came back as duplicates, not twice stored
    c.shutdown()


def test_a_gateway_down_for_a_while_gets_everything_when_it_returns(app, stored):
    live = LiveServer(app)
    port = live.port
    c = client(f"http://127.0.0.1:{port}", batch_size=10)
    c.grant(personalization=True)
    live.close()  # nothing listens on the port now
    for i in range(50):
        c.track("screen_view", screen=f"d{i}")
    assert c.flush(1) is False
    time.sleep(0.5)
    assert c.stats.retries >= 2
    back = LiveServer(app, port=port)  # the gateway returns on the same address
    try:
        assert c.flush(15)
        assert screens(stored("personalization")) == Counter({f"d{i}": 1 for i in range(50)})
    finally:
        c.shutdown()
        back.close()


def test_other_4xx_are_given_up_with_a_reason(url, caplog):
    c = client(url, token="forged.token")
    c.policy()
    c._set_consent(c.state(refresh=False).__class__(frozenset({"personalization"})))
    c.track("screen_view", screen="x")
    assert c.flush(5)
    assert c.stats.given_up == 1
    assert "invalid_subject" in caplog.text
    c.shutdown()


# ---------------------------------------------------------------------------- spool and fork
def test_the_spool_keeps_token_consent_and_events_across_restarts(url, tmp_path, stored):
    spool = tmp_path / "spool.db"
    first = client("http://127.0.0.1:9", spool=spool, timeout=0.5)  # nothing listens there
    first.transport.endpoint = url
    first.grant(personalization=True)
    first.transport.endpoint = "http://127.0.0.1:9"
    first.transport.close()
    for i in range(30):
        first.track("screen_view", screen=f"p{i}")
    assert first.shutdown(timeout=0.3) is False  # could not send: kept on disk
    second = client(url, spool=spool)
    assert second.token == first.token
    assert second.state(refresh=False).granted == {"necessary", "personalization"}
    assert len(second.buffer) == 30
    assert second.flush(5)
    assert screens(stored("personalization")) == Counter({f"p{i}": 1 for i in range(30)})
    second.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")  # always true on Linux CI
def test_a_forked_worker_sends_its_own_events_and_the_parent_its_own(url, stored):
    c = client(url)
    c.grant(personalization=True)
    c.track("screen_view", screen="parent-before")
    assert c.flush(5)
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker, say
        code = 1
        try:
            ok = c.track("screen_view", screen="child")
            code = 0 if ok and c.flush(5) else 2
        finally:
            os._exit(code)
    c.track("screen_view", screen="parent-after")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert c.flush(5)
    assert screens(stored("personalization")) == Counter(
        {"parent-before": 1, "child": 1, "parent-after": 1}
    )
    c.shutdown()


def test_batches_carry_the_consent_hint_so_the_gateway_reads_no_consent(url, r, stored):
    c = client(url, batch_size=50)
    c.grant(personalization=True)
    assert c.transport.consent_hint  # from the consent answer
    calls = int(r.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))
    for i in range(200):
        c.track("screen_view", screen=f"h{i}")
    assert c.flush(10)
    assert int(r.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)) == calls
    assert len(stored("personalization")) == 200
    c.withdraw("personalization")  # the hint moves with the ledger; the 200 are deleted
    assert stored("personalization") == []
    c.grant(personalization=True)
    c.track("screen_view", screen="after")
    assert c.flush(5)
    assert len(stored("personalization")) == 1
    c.shutdown()


def test_a_grant_after_an_offline_withdrawal_is_recorded_after_it(live, url, app):
    from tests.sdk_py.conftest import Relay

    relay = Relay(live.port)
    c = client(f"http://127.0.0.1:{relay.port}")
    c.grant(advertising=True, personalization=True)
    relay.close()
    with pytest.raises(GatewayUnavailable):
        c.withdraw("advertising")
    c.transport.endpoint = url  # back online
    c.transport.close()
    # reading the state while the withdrawal is kept does not bring the purpose back
    assert "advertising" not in c.state().granted
    c.grant(advertising=True)  # the person changes their mind again
    assert "advertising" in c.state().granted
    time.sleep(0.3)  # the consumer has nothing kept to send any more
    entries = (
        app.test_client()
        .get("/v1/consent/history", headers={"X-Subject": c.token})
        .get_json()["entries"]
    )
    adv = [e["purposes"].get("advertising") for e in entries]
    assert adv == [True, False, True]  # in the order the person chose
    assert c.state().granted >= {"advertising", "personalization"}
    c.shutdown()


def test_a_device_value_the_gateway_would_refuse_is_left_out_not_the_events(url, stored):
    device = DeviceInfo(
        app_version=lambda: "3.8.1+" + "g" * 100,  # over the policy's 64 characters
        device_model=lambda: 42,  # not a string
        os=lambda: "Android",
        gps=lambda: {"lat": 123.0, "lon": 0.0},  # out of range
    )
    c = client(url, device=device)
    c.grant(account_security=True, personalization=True)
    c.grant(precise_location=True)
    for i in range(5):
        c.track("screen_view", screen=f"v{i}")
    assert c.flush(5)
    assert c.stats.stored == 5 and c.stats.given_up == 0
    security = stored("account_security")
    assert {p.get("os") for p in security} == {"Android"}
    assert not any("app_version" in p or "device_model" in p for p in security)
    assert stored("precise_location") == []
    c.shutdown()


def test_a_grant_is_given_to_the_policy_as_it_is_now(url, tmp_path):
    spool = tmp_path / "old-policy.db"
    first = client(url, spool=spool)
    doc = first.policy().document
    first.buffer.set_meta("policy", json.dumps({**doc, "version": "2018-02-04"}))
    first.shutdown()
    again = client(url, spool=spool)
    assert again.policy().version == "2018-02-04"  # what the spool remembered
    receipt = again.grant(personalization=True)
    assert receipt["policy_version"] == "2026-11-01"
    assert again.state().needs_reconsent == ()
    again.shutdown()


# ---------------------------------------------------------------------------- separate consent
def consent_posts(c: TelemetryClient, mark: str | None = None) -> list:
    """Record the purposes of each POST /v1/consent ``c`` sends. ``mark``: a purpose the
    policy document the client reads calls sensitive too."""
    sent: list[dict] = []
    call = c.transport.call

    def spy(method: str, path: str, **kw):
        if method == "POST" and path == "/v1/consent":
            sent.append(dict(kw["body"]["purposes"]))
        answer = call(method, path, **kw)
        if mark and path == "/v1/policy":
            answer["purposes"][mark]["sensitive"] = True
        return answer

    c.transport.call = spy  # type: ignore[method-assign]
    return sent


def ledger(app, c: TelemetryClient) -> list[dict]:
    history = app.test_client().get("/v1/consent/history", headers={"X-Subject": c.token})
    entries = history.get_json()["entries"]
    return [{p: g for p, g in e["purposes"].items() if p != "necessary"} for e in entries]


def test_a_sensitive_grant_must_be_asked_and_made_alone(url, app):
    """PIPL art. 29: the SDK cannot know the person was asked separately, so it does not turn
    one bundled choice into two: it refuses it before anything is sent."""
    c = client(url)
    assert c.policy().document["purposes"]["precise_location"]["sensitive"] is True
    sent = consent_posts(c)
    with pytest.raises(ValueError, match="precise_location: sensitive personal information"):
        c.grant(personalization=True, precise_location=True)
    assert sent == []  # nothing sent, nothing recorded
    c.grant(personalization=True)
    c.grant(precise_location=True)  # its own screen, its own request
    c.grant(precise_location=False, personalization=False)  # refusing it with others is fine
    assert (
        sent
        == ledger(app, c)
        == [
            {"personalization": True},
            {"precise_location": True},
            {"precise_location": False, "personalization": False},
        ]
    )
    assert c.state().granted == {"necessary"}
    c.shutdown()


def test_which_purposes_are_sensitive_comes_from_the_policy_document(url, app):
    c = client(url)
    sent = consent_posts(c, mark="advertising")
    with pytest.raises(ValueError, match="advertising"):
        c.grant(advertising=True, personalization=True)
    c.grant(advertising=True)
    assert sent == ledger(app, c) == [{"advertising": True}]
    c.shutdown()
