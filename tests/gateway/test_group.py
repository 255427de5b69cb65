"""Group commit (storage/group.py): event writes waiting together share one script call, and
each request is answered with its own result only once its call returned.

(a) requests of several browsers held together in one call: each gets its own answer (stored,
    not consented, duplicate), on every kind of store; on a cluster a call holds one slot
    group only;
(b) a call whose reply is lost: the beacons with minted ids answer 503, the others are sent
    again flagged as retries and stored once;
(c) a store killed (SIGKILL, restarted from its append-only file) or hung (SIGSTOP) while
    beacons keep coming: every beacon answered 200 is in the store afterwards;
(d) the limits: no call holds more than ``max_requests`` writes or (past its first) more than
    ``max_bytes``, and every request is answered.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.storage.group import GroupCommit
from tests.helpers import grant, stream_events

ALL = {"personalization": True, "account_security": True}


class Hold:
    """The real events script, whose first call waits until ``waiting`` more writes queue
    behind it in the same line, so that the next call carries a group of them (the timing a
    loaded process gives, on cue). Records every call's keys."""

    def __init__(self, group: GroupCommit, waiting: int) -> None:
        self.group, self.script, self.waiting = group, group._script, waiting
        self.calls: list[tuple[list[str], list[Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, *, keys: Any, args: Any, client: Any) -> Any:
        with self.lock:
            first = not self.calls
            self.calls.append((list(keys), list(args)))
        if first:
            deadline = time.monotonic() + 10
            while sum(len(line.queue) for line in self.group._lines.values()) < self.waiting:
                if time.monotonic() > deadline:
                    queued = [len(line.queue) for line in self.group._lines.values()]
                    raise AssertionError(f"the other writes never queued: {queued}")
                time.sleep(0.005)
        return self.script(keys=keys, args=args, client=client)


def _browsers(app: Flask, n: int, **purposes: bool) -> list[FlaskClient]:
    out = []
    for _ in range(n):
        c = app.test_client()
        grant(c, **purposes)
        out.append(c)
    return out


def _sid(c: FlaskClient) -> str:
    return c.get_cookie("_vid").value.split(".")[0]


def _beacon(c: FlaskClient, url: str, event_id: str | None = None) -> int:
    query = f"type=page_view&url={url}" + (f"&event_id={event_id}" if event_id else "")
    return c.get(f"/p.gif?{query}").status_code


def _urls(r: Any) -> set[str]:
    """The urls of the page views stored (their personalization parts; the account_security
    part of each is written by the same atomic call)."""
    return {part["url"] for _, _, part in stream_events(r, "personalization")}


# ------------------------------------------------------------------------- (a) answers
@pytest.mark.stores
def test_requests_held_in_one_call_each_get_their_own_answer(app, r, request):
    store = app.extensions["gateway"].store
    both = _browsers(app, 3, **ALL)
    security_only = _browsers(app, 2, account_security=True)
    nothing = _browsers(app, 1)  # a consent recorded, nothing optional granted
    repeat = both[0]
    assert repeat.post("/v1/events", json={"events": [_event("seen-before-1")]}).status_code == 202
    cluster = request.node.callspec.params["redis_url"] == "cluster"
    # On a cluster each slot group has a line of its own: nothing queues behind another's.
    hold = Hold(store._group, waiting=0 if cluster else 5)
    store._group._script = hold

    jobs: list[tuple[str, Callable[[], Any]]] = []
    for i, c in enumerate(both):
        jobs.append(
            (
                f"both-{i}",
                lambda c=c, i=i: c.post(
                    "/v1/events", json={"events": [_event(f"both-{i}-a"), _event(f"both-{i}-b")]}
                ),
            )
        )
    for i, c in enumerate(security_only):
        jobs.append(
            (
                f"sec-{i}",
                lambda c=c, i=i: c.post("/v1/events", json={"events": [_event(f"security-{i}-a")]}),
            )
        )
    jobs.append(
        ("nothing", lambda: nothing[0].post("/v1/events", json={"events": [_event("nothing-a")]}))
    )
    jobs.append(
        (
            "dup",
            lambda: repeat.post(
                "/v1/events", json={"events": [_event("seen-before-1"), _event("fresh-after-dup")]}
            ),
        )
    )
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = dict(zip([n for n, _ in jobs], pool.map(lambda j: j[1](), jobs), strict=True))

    for name, resp in answers.items():
        assert resp.status_code == 202, (name, resp.get_json())
    got = {name: resp.get_json() for name, resp in answers.items()}
    for i in range(3):
        assert (got[f"both-{i}"]["stored"], got[f"both-{i}"]["duplicates"]) == (2, 0)
        assert "reason" not in got[f"both-{i}"]
    for i in range(2):
        assert got[f"sec-{i}"]["stored"] == 1
        assert got[f"sec-{i}"]["reason"] == "partly_consented"
        assert "url" in got[f"sec-{i}"]["dropped_fields"]
    assert (got["nothing"]["stored"], got["nothing"]["reason"]) == (0, "not_consented")
    assert (got["dup"]["stored"], got["dup"]["duplicates"]) == (1, 1)

    # Grouping happened: fewer calls than requests (on a cluster, lines per slot group).
    # six writes reach the store, the dup request's twice (dup, then the rest)
    assert len(hold.calls) == 7 if cluster else len(hold.calls) <= 3
    for keys, _ in hold.calls:  # a call's keys share one slot group on a cluster
        tags = {k.split("}", 1)[0] for k in keys}
        assert len(tags) == 1 or not cluster, keys

    stored = {(part["event_id"], purpose, part["sid"]) for _, purpose, part in stream_events(r)}
    for i, c in enumerate(both):
        for suffix in "ab":
            for purpose in ALL:
                assert (f"both-{i}-{suffix}", purpose, _sid(c)) in stored
    for i, c in enumerate(security_only):
        assert (f"security-{i}-a", "account_security", _sid(c)) in stored
        assert (f"security-{i}-a", "personalization", _sid(c)) not in stored
    assert not [e for e in stored if e[0] == "nothing-a"]
    assert len([e for e in stored if e[0] == "seen-before-1"]) == 2  # once per purpose


def _event(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "page_view",
        "url": f"https://shop.example.com/{event_id}",
    }


# ------------------------------------------------------------------------- (b) lost reply
class LoseGroupReply:
    """Runs the real call, then loses the reply of the first call holding several requests
    (a fault no server gives on cue)."""

    def __init__(self, hold: Hold) -> None:
        self.hold, self.lost = hold, False

    def __call__(self, *, keys: Any, args: Any, client: Any) -> Any:
        answers = self.hold(keys=keys, args=args, client=client)
        if len(answers) > 1 and not self.lost:
            self.lost = True
            raise redis.ConnectionError("reply lost")
        return answers


def test_a_lost_reply_fails_minted_beacons_and_sends_the_others_again(app, r):
    store = app.extensions["gateway"].store
    browsers = _browsers(app, 4, **ALL)
    hold = Hold(store._group, waiting=3)
    store._group._script = LoseGroupReply(hold)
    sent = [("minted-0", None), ("minted-1", None), ("own-2", "own-id-2"), ("own-3", "own-id-3")]
    with ThreadPoolExecutor(len(sent)) as pool:
        statuses = list(
            pool.map(
                lambda i: _beacon(
                    browsers[i], f"https://shop.example.com/{sent[i][0]}", sent[i][1]
                ),
                range(len(sent)),
            )
        )
    # The first call holds one beacon; the three queued behind it share the next call,
    # whose reply is lost: its minted beacons answer 503, the others go again flagged "r".
    [alone, lost, *again] = hold.calls
    assert len(alone[0]) == 6 and len(lost[0]) == 18  # keys: 6 a request (2 purposes)
    retried = [args for _, args in again]
    assert retried and all("r" in args[4] for args in retried)
    urls = _urls(r)
    for status, (name, own_id) in zip(statuses, sent, strict=True):
        if status == 200:
            assert f"https://shop.example.com/{name}" in urls, name  # answered 200: stored
        else:
            assert (status, own_id) == (503, None), name
    assert statuses[2:] == [200, 200]  # a retry answers what the lost call stored
    assert 503 in statuses[:2]
    for own_id in ("own-id-2", "own-id-3"):
        parts = [p for _, _, p in stream_events(r) if p["event_id"] == own_id]
        assert len(parts) == 2  # one per purpose: stored once, not twice


# ------------------------------------------------------------------------- (c) store dies
@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_every_beacon_answered_200_is_stored_when_the_store_stops_mid_group(servers, gateways, how):
    server = servers.valkey("group")
    port = server.port
    app = gateways(server.connection_url, REDIS_SOCKET_TIMEOUT_S=1.5, AOF_TIMEOUT_MS=1_000)
    browsers = _browsers(app, 8, **ALL)
    answered: dict[str, int] = {}
    stop = threading.Event()
    counter = itertools.count()

    def send(c: FlaskClient) -> None:
        while not stop.is_set():
            n = next(counter)
            url = f"https://shop.example.com/beacon-{n}"
            answered[url] = _beacon(c, url, f"explicit-{n}" if n % 3 == 0 else None)

    threads = [threading.Thread(target=send, args=(c,)) for c in browsers]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        pid = server._process.pid
        if how == "SIGKILL":
            server.terminate()  # no shutdown: only what reached the append-only file stays
            time.sleep(0.5)
            server = servers.valkey("group", port=port)
        else:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(2.5)  # past the socket timeout: calls in flight fail
            os.kill(pid, signal.SIGCONT)
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    statuses = list(answered.values())
    assert set(statuses) <= {200, 503}, set(statuses)
    assert statuses.count(200) > 50 and statuses.count(503) > 0, (
        statuses.count(200),
        statuses.count(503),
    )
    probe = redis.Redis.from_url(server.connection_url, decode_responses=True)
    try:
        stored = _urls(probe)
    finally:
        probe.close()
    lost = [url for url, status in answered.items() if status == 200 and url not in stored]
    assert not lost, f"{len(lost)} beacons answered 200 are not in the store: {lost[:5]}"


# ------------------------------------------------------------------------- (d) limits
@pytest.mark.parametrize(("max_requests", "max_bytes"), [(3, 1 << 20), (32, 600)])
def test_calls_keep_to_their_limits_and_answer_everyone(app, r, max_requests, max_bytes):
    store = app.extensions["gateway"].store
    store._group.max_requests, store._group.max_bytes = max_requests, max_bytes
    sizes: list[int] = []
    real = store._group._script

    def counting(*, keys: Any, args: Any, client: Any) -> Any:
        answers = real(keys=keys, args=args, client=client)
        sizes.append(len(answers))
        size = sum(len(a) for a in args if isinstance(a, str | bytes))
        assert len(answers) == 1 or size <= max_bytes
        return answers

    store._group._script = counting
    browsers = _browsers(app, 12, **ALL)
    with ThreadPoolExecutor(12) as pool:
        statuses = list(
            pool.map(
                lambda i: [
                    _beacon(browsers[i], f"https://shop.example.com/limit-{i}-{k}")
                    for k in range(15)
                ],
                range(12),
            )
        )
    assert all(s == 200 for row in statuses for s in row)
    assert sum(sizes) == 12 * 15
    assert max(sizes) <= max_requests
    urls = _urls(r)
    assert all(
        f"https://shop.example.com/limit-{i}-{k}" in urls for i in range(12) for k in range(15)
    )
