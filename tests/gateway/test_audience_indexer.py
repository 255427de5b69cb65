"""The audience indexer (``core/audiences/indexer.py``) on the real stores: killed with
SIGKILL mid-stream it loses nothing and counts nothing twice (the index a new indexer makes
from where it stopped equals one rebuilt from scratch), its lease keeps it single, and its
activity windows roll with the days."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pyroaring import BitMap

from gateway.app import create_app
from gateway.core.audiences.index import PersonSpace
from gateway.core.audiences.indexer import Indexer

from ..conftest import make_config
from ..helpers import app_subject, event

pytestmark = pytest.mark.stores


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(
        make_config(redis_url, tmp_path, AUDIENCE_INDEXER=False, RATE_LIMITS=False)
    )
    yield application
    for close in application.extensions["gateway"].closers:
        close()


def gw(app: Flask) -> Any:
    return app.extensions["gateway"]


def saved(app: Flask) -> dict[str, BitMap]:
    """Every shard's saved bitmaps, merged (what readers see)."""
    store = gw(app).store.audiences
    merged: dict[str, BitMap] = {}
    for shard in range(store.shards):
        for name, blob in store.load_shard(shard).bitmaps.items():
            merged[name] = merged.get(name, BitMap()) | BitMap.deserialize(blob)
    return {n: bm for n, bm in merged.items() if bm}


def traffic(client: FlaskClient, subjects: int, requests: int) -> None:
    for i in range(subjects):
        _, token = app_subject(client, personalization=True, advertising=i % 3 != 0)
        for j in range(requests):
            events = [event("search", keyword="k", category=f"C{(i + j) % 7}") for _ in range(3)]
            resp = client.post("/v1/batch", json={"events": events}, headers={"X-Subject": token})
            assert resp.status_code == 202


def test_an_indexer_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    app: Flask, client: FlaskClient, redis_url: str
) -> None:
    traffic(client, 16, 8)  # 128 entries (and the consents) over the 64 shards' streams
    env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_RATE_LIMITS": "off"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "audiences", "run", "--batch", "64", "--every", "0.05"],
        env=env,
        stderr=subprocess.PIPE,
    )
    store = gw(app).store.audiences
    try:
        deadline = time.monotonic() + 30
        while sum(store.generations()[0]) == 0:  # its first round saved: kill it now
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store.r.delete("aud:{lease}")  # its lease would lapse in 30 s: take it now
    indexer = gw(app).indexer
    assert indexer.run_until_idle() > 0  # it had not read everything
    after_crash = saved(app)
    assert after_crash["e:category=C0"]
    rebuilt = Indexer(
        store, gw(app).store, gw(app).store.accounts, gw(app).catalogue, gw(app).min_grant
    )
    store.r.delete("aud:{lease}")
    rebuilt.rebuild()
    assert saved(app) == after_crash
    for key in [k for s in range(store.shards) for k in store._streams(s)]:
        assert store.r.xpending(key, "audiences")["pending"] == 0, key


def test_one_indexer_at_a_time(app: Flask, client: FlaskClient) -> None:
    traffic(client, 2, 1)
    first = gw(app).indexer
    second = Indexer(
        gw(app).store.audiences,
        gw(app).store,
        gw(app).store.accounts,
        gw(app).catalogue,
        gw(app).min_grant,
    )
    assert first.step() > 0
    assert second.step() == 0  # the lease is the first one's
    with pytest.raises(RuntimeError, match="lease"):
        second.rebuild()


def test_activity_windows_roll_with_the_days(app: Flask, client: FlaskClient) -> None:
    traffic(client, 1, 1)
    today = datetime.now(UTC).date()
    clock = {"day": today}
    g = gw(app)
    indexer = Indexer(
        g.store.audiences,
        g.store,
        g.store.accounts,
        g.catalogue,
        g.min_grant,
        today=lambda: clock["day"],
    )
    indexer.run_until_idle()
    assert [len(saved(app)[f"active:{w}"]) for w in (7, 30, 90)] == [1, 1, 1]
    for days, expected in ((8, [0, 1, 1]), (31, [0, 0, 1])):
        clock["day"] = today + timedelta(days=days)
        indexer.step()
        got = saved(app)
        assert [len(got.get(f"active:{w}", BitMap())) for w in (7, 30, 90)] == expected
    clock["day"] = today + timedelta(days=91)
    indexer.step()
    assert not any(n.startswith(("active:", "day:")) for n in saved(app))


def test_person_numbers_stay_in_their_shard() -> None:
    space = PersonSpace(64)
    assert space.bits == 26
    n = space.number(63, 5)
    assert space.shard_of(n) == 63 and space.bounds(63) == (63 << 26, 64 << 26)
    with pytest.raises(OverflowError):
        space.number(1, 1 << 26)
    assert PersonSpace(1).bits == 32 and PersonSpace(1024).bits == 22


def test_a_gateway_keeps_the_index_on_its_thread_and_the_command_rebuilds_it(
    redis_url: str, tmp_path: Path
) -> None:
    on = create_app(
        make_config(
            redis_url,
            tmp_path,
            AUDIENCE_INDEXER=True,
            AUDIENCE_INDEX_EVERY_S=0.05,
            RATE_LIMITS=False,
        )
    )
    env = {**os.environ, "REDIS_URL": redis_url}
    command = [sys.executable, "-m", "gateway", "audiences", "rebuild"]
    try:
        traffic(on.test_client(), 3, 2)  # the first request starts the thread
        deadline = time.monotonic() + 20
        while "e:category=C1" not in saved(on):
            assert time.monotonic() < deadline, "the indexer thread did not index"
            time.sleep(0.05)
        time.sleep(0.3)
        kept = saved(on)
        held = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert held.returncode == 1 and "another indexer holds the lease" in held.stderr
    finally:
        for close in on.extensions["gateway"].closers:  # it gives its lease up
            close()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "audience index rebuilt" in done.stdout
    again = create_app(make_config(redis_url, tmp_path / "again"))
    try:
        assert saved(again) == kept
    finally:
        for close in again.extensions["gateway"].closers:
            close()


def test_a_round_cut_short_by_the_store_is_read_again(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store failing mid-round (injected: the save after the feed was read) leaves the
    entries unacknowledged; the next round reads them again and nothing is missing."""
    from gateway.core.errors import StorageUnavailable

    traffic(client, 6, 2)
    store = gw(app).store.audiences
    real = store.save_shard

    def failing(*args: Any, **kwargs: Any) -> int:
        monkeypatch.setattr(store, "save_shard", real)
        raise StorageUnavailable("injected")

    monkeypatch.setattr(store, "save_shard", failing)
    indexer = gw(app).indexer
    with pytest.raises(StorageUnavailable):
        indexer.step()
    indexer.run_until_idle()
    recovered = saved(app)
    assert len(recovered["e:category=C0"]) >= 1
    indexer.rebuild()
    assert saved(app) == recovered


def test_grants_made_before_a_policy_change_stop_counting(app: Flask, client: FlaskClient) -> None:
    """A new policy version that changes the counted purpose ends every earlier grant without
    a ledger entry: the next indexer to take the lease reads every person's consent again."""
    traffic(client, 3, 1)
    g = gw(app)
    g.indexer.run_until_idle()
    assert len(saved(app).get("consent", BitMap())) == 2  # one in three refused advertising
    g.indexer.close()
    later = {**g.min_grant, "advertising": 99}  # a version beyond every grant made
    after = Indexer(g.store.audiences, g.store, g.store.accounts, g.catalogue, later)
    after.run_until_idle()
    assert "consent" not in saved(app)  # emptied: nobody's grant counts any more
