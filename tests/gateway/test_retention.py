"""Retention trims each purpose by its own period, from the catalogue."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.core import retention

from ..helpers import CHROME, K, grant, page_view

pytestmark = pytest.mark.stores  # run on the embedded Valkey, Redis 7.0 and a cluster


def test_each_purpose_keeps_its_own_period(app: Flask, client: FlaskClient, r: redis.Redis) -> None:
    svc = app.extensions["gateway"]
    cat = svc.catalogue
    grant(client, personalization=True, account_security=True)
    client.post("/v1/events", json=page_view(), headers={"User-Agent": CHROME})
    now = int(time.time() * 1000)
    day = retention.DAY_MS

    # just inside account_security's period: nothing goes
    inside = now + (cat.purposes["account_security"].retention_days - 1) * day
    assert retention.apply(svc.store, cat, inside) == dict.fromkeys(cat.optional_purposes, 0)

    # past account_security's 180 days but inside personalisation's 365
    past = now + (cat.purposes["account_security"].retention_days + 1) * day
    removed = retention.apply(svc.store, cat, past)
    assert removed["account_security"] == 1 and removed["personalization"] == 0
    body = client.get("/v1/subject").get_json()
    assert set(body["events"]) == {"personalization"}


def test_index_expires_with_the_longest_retention(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    client.post("/v1/events", json=page_view())
    index = next(iter(r.scan_iter("*:s:*:index")))
    days = r.pttl(index) / 86_400_000
    # necessary's 395 days is the longest period in the catalogue; the index is renewed
    # once per dedup window (1 day), so it outlives its entries by two windows.
    assert 396 < days <= 397
    dedup = next(iter(r.scan_iter("*:s:*:dedup")))
    assert 0.99 < r.pttl(dedup) / 86_400_000 <= 1


def old_entry(r: redis.Redis, purpose: str, beside: str) -> str:
    """An entry from 1970 (stream ids are times: past every period) in another empty stream
    of ``purpose`` than ``beside`` (a stream takes no id below its newest)."""
    stream = next(s for s in K.streams(purpose) if s != beside and not r.exists(s))
    r.xadd(stream, {"sid": "0" * 32, "n": 1, "events": "[]"}, id="1000-0")
    return stream


def test_retention_runs_by_itself_once_per_period_and_metrics_show_it(
    app: Flask, client: FlaskClient, r: redis.Redis, gateways: Any
) -> None:
    """Every serving process looks, one of all those sharing the store runs: here two
    gateways on one store, each with its job, a period of 0.4 s."""
    grant(client, personalization=True, account_security=True)
    client.post("/v1/events", json=page_view(), headers={"User-Agent": CHROME})
    stream = next(iter(r.scan_iter("*:ev:personalization")))
    old = old_entry(r, "personalization", stream)
    url = app.config["REDIS_URL"]
    first, second = gateways(url, RETENTION_EVERY_S=0.4), gateways(url, RETENTION_EVERY_S=0.4)
    for gw in (first, second):
        [job] = [j for j in gw.extensions["gateway"].jobs if j.name == "retention"]
        gw.test_client().get("/healthz")  # a serving process starts its jobs
        assert job.running
    store = first.extensions["gateway"].store
    deadline = time.monotonic() + 10
    while (store.last_retention() is None) and time.monotonic() < deadline:
        time.sleep(0.05)
    run = store.last_retention()
    assert run is not None and run.removed["personalization"] == 1
    assert r.xlen(stream) == 1 and r.xlen(old) == 0  # the fresh entry stays
    # /metrics of either gateway shows the run, whichever process made it
    for gw in (first, second):
        text = gw.test_client().get("/metrics").get_data(as_text=True)
        assert 'gateway_retention_last_removed{purpose="personalization"} 1.0' in text
        assert "gateway_retention_last_run_timestamp_seconds" in text
    # two looking processes, one run per period: over 2 s, about 5 runs, not 10
    began = store.last_retention().runs
    time.sleep(2.0)
    runs = store.last_retention().runs - began
    assert 3 <= runs <= 6, runs


def test_concurrent_looks_make_one_run(app: Flask, r: redis.Redis) -> None:
    svc = app.extensions["gateway"]
    r.delete("gw:retention")
    calls: list[int] = []

    def work() -> dict[str, int]:
        calls.append(1)
        time.sleep(0.2)  # long enough for every other look to find the lock taken
        return {"personalization": 0}

    with ThreadPoolExecutor(6) as pool:
        done = list(pool.map(lambda _: svc.store.run_retention(3_600_000, work), range(6)))
    assert len(calls) == 1 and sum(d is not None for d in done) == 1
    # not due again for an hour; forced, it runs (the operator's command)
    assert svc.store.run_retention(3_600_000, work) is None
    assert svc.store.run_retention(3_600_000, work, force=True) is not None
    assert svc.store.last_retention().runs == 2


def test_a_process_serving_only_the_pixel_starts_its_jobs(
    app: Flask, client: FlaskClient, r: redis.Redis, gateways: Any
) -> None:
    """The pixel is answered in front of Flask, whose hook started the jobs for every other
    path: a worker that only ever got beacons never trimmed anything."""
    grant(client, personalization=True, account_security=True)
    client.post("/v1/events", json=page_view(), headers={"User-Agent": CHROME})
    stream = next(iter(r.scan_iter("*:ev:personalization")))
    old = old_entry(r, "personalization", stream)
    gw = gateways(app.config["REDIS_URL"], RETENTION_EVERY_S=0.4)
    svc = gw.extensions["gateway"]
    [job] = [j for j in svc.jobs if j.name == "retention"]
    assert not job.running and not svc.store.compactor.job.running  # nothing served yet
    beacon = gw.test_client().get("/p.gif?type=page_view", headers={"User-Agent": CHROME})
    assert beacon.status_code == 200 and beacon.mimetype == "image/gif"
    assert job.running and svc.store.compactor.job.running
    deadline = time.monotonic() + 10
    while r.xlen(old) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.xlen(old) == 0 and r.xlen(stream) >= 1  # trimmed by the pixel-only process
