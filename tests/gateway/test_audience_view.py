"""A reader's merged copy of the audience index (``core/audiences/view.py`` over
``core/audiences/index.py``), on the real store: the bitmaps answer exactly what plain Python
sets answer (values OR, dimensions AND, only people with consent, withdrawals out), shards
merge and a shard saved again replaces its share, and the memory shows in ``/metrics``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from gateway.app import create_app
from gateway.core.audiences.index import PersonSpace, active, from_events, from_trait
from gateway.core.audiences.view import IndexView

from ..conftest import make_config

DIMS = {
    "category": ["A", "B", "C"],
    "province": ["广东省", "浙江省"],
    "industry": ["rail", "energy"],
}


person = st.fixed_dictionaries(
    {
        "shard": st.integers(0, 63),
        "consent": st.booleans(),
        "active": st.booleans(),
        "category": st.sets(st.sampled_from(DIMS["category"]), max_size=2),
        "province_seen": st.sets(st.sampled_from(DIMS["province"]), max_size=1),
        "province_trait": st.sets(st.sampled_from(DIMS["province"]), max_size=1),
        "industry": st.sets(st.sampled_from(DIMS["industry"]), max_size=1),
    }
)
query = st.fixed_dictionaries(
    {},
    optional={
        d: st.lists(st.sampled_from(v), min_size=1, max_size=2, unique=True)
        for d, v in DIMS.items()
    },
)


@given(
    people=st.lists(person, max_size=40),
    queries=st.lists(query, min_size=1, max_size=4),
    withdrawn=st.sets(st.integers(0, 39), max_size=3),
    active_only=st.booleans(),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_bitmaps_count_what_plain_sets_count(
    module_gateway: Flask,
    people: list[dict[str, Any]],
    queries: list[dict[str, list[str]]],
    withdrawn: set[int],
    active_only: bool,
) -> None:
    store = module_gateway.extensions["gateway"].store.audiences
    store.r.flushdb()
    space = PersonSpace(store.shards)
    shards: dict[int, dict[str, BitMap]] = {}
    numbers = []
    for i, p in enumerate(people):
        n = space.number(p["shard"], i)
        numbers.append(n)
        maps = shards.setdefault(p["shard"], {})
        names = ["consent"] * p["consent"] + [active(7)] * p["active"]
        names += [from_events("category", v) for v in p["category"]]
        names += [from_events("province", v) for v in p["province_seen"]]
        names += [from_trait("province", v) for v in p["province_trait"]]
        names += [from_trait("industry", v) for v in p["industry"]]
        for name in names:
            maps.setdefault(name, BitMap()).add(n)
    for shard, maps in shards.items():
        store.save_shard(shard, {k: v.serialize() for k, v in maps.items()}, [])
    # withdrawals not yet folded: marks naming the people by number
    for i in withdrawn:
        if i < len(people):
            store.r.sadd(store.keys.audience(people[i]["shard"], "marks"), f"#{numbers[i]}|1-0")
    view = IndexView(store, module_gateway.extensions["gateway"].catalogue.audiences)
    view.refresh()
    for q in queries:
        expected = set()
        for i, p in enumerate(people):
            if not p["consent"] or i in withdrawn or (active_only and not p["active"]):
                continue
            has = {
                "category": p["category"],
                "province": p["province_seen"] | p["province_trait"],
                "industry": p["industry"],
            }
            if all(has[d] & set(values) for d, values in q.items()):
                expected.add(numbers[i])
        filters = tuple(sorted((d, tuple(v)) for d, v in q.items()))
        got = view.matching(filters, 7 if active_only else None)
        assert set(got) == expected


def test_a_shard_saved_again_replaces_its_share_only(module_gateway: Flask) -> None:
    store = module_gateway.extensions["gateway"].store.audiences
    store.r.flushdb()
    space = PersonSpace(store.shards)
    a, b = space.number(3, 0), space.number(40, 0)
    store.save_shard(3, {"consent": BitMap([a]).serialize()}, [])
    store.save_shard(40, {"consent": BitMap([b]).serialize()}, [])
    view = IndexView(store, module_gateway.extensions["gateway"].catalogue.audiences)
    view.refresh()
    assert set(view.people()) == {a, b}
    store.save_shard(3, {"consent": BitMap().serialize()}, [])
    view.refresh()
    assert set(view.people()) == {b}
    store.reset()  # a rebuild: readers start again from nothing
    view.refresh()
    assert set(view.people()) == set()


def test_the_index_memory_is_in_metrics(redis_url: str, tmp_path: Path) -> None:
    app = create_app(make_config(redis_url, tmp_path))
    try:
        client: FlaskClient = app.test_client()
        key = app.extensions["gateway"].apikeys.create("m", ["audiences"])
        store = app.extensions["gateway"].store.audiences
        space = PersonSpace(store.shards)
        store.save_shard(
            1,
            {"consent": BitMap(range(space.number(1, 0), space.number(1, 15000), 3)).serialize()},
            [],
        )
        resp = client.post(
            "/v1/audiences/estimate",
            json={"filters": {}},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert resp.status_code == 200 and resp.get_json()["below_threshold"] is False
        text = client.get("/metrics").get_data(as_text=True)
        line = next(
            x
            for x in text.splitlines()
            if x.startswith('gateway_audience_index_bytes{holder="reader"}')
        )
        assert float(line.split()[-1]) >= 8192  # 5,000 people of 15,000: a bitmap container
    finally:
        for close in app.extensions["gateway"].closers:
            close()
