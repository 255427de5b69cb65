"""Retention trims each purpose by its own period, from the catalogue."""

from __future__ import annotations

import time

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.core import retention

from ..helpers import CHROME, grant, page_view

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
