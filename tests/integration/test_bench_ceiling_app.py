"""``bench/ceiling_app.py``, the design's ceiling that bench_gateway.py measures the pixel
against: its first ``/ceiling.gif`` is a real beacon, every later one stores a copy of that
beacon's write (never deduplicated), so what it reads is a store write per request."""

from __future__ import annotations

import sys
from pathlib import Path

import redis
from flask import Flask
from flask.testing import FlaskClient

from ..helpers import CHROME, grant, stream_events

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import ceiling_app
from load import PIXEL_QUERY


def stored(r: redis.Redis) -> int:
    """Entries of every personalization stream."""
    return sum(int(r.xlen(k)) for k in r.scan_iter("*:ev:personalization"))


def test_each_ceiling_request_stores_one_copy_of_a_real_beacon(
    app: Flask, client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True, account_security=True)
    ceiling_app.wrap(app)  # the same application (its cookies, this client's), a path more
    before = stored(r)
    for n in range(1, 5):
        got = client.get("/ceiling.gif?" + PIXEL_QUERY, headers={"User-Agent": CHROME})
        assert got.status_code == 200 and got.mimetype == "image/gif"
        assert stored(r) == before + n  # the first a beacon, then its copies, none a duplicate
    # copies of the first: its event id four times (real beacons would each mint their own)
    ids = [part["event_id"] for _, _, part in stream_events(r, "personalization")]
    assert len(ids) == 4 and len(set(ids)) == 1
    # every other path is the gateway's
    assert client.get("/healthz").status_code == 200
