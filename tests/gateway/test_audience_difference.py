"""The difference check (``core/audiences/difference.py``) on the real store: telling an
earlier query apart by counts alone (without matching it again) refuses exactly what matching
every earlier query and comparing the sets refuses, with the reader's cache cold or warm."""

from __future__ import annotations

from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from gateway.core.audiences.difference import Earlier, first_too_close
from gateway.core.audiences.index import CONSENT, PersonSpace, active, from_events, from_trait
from gateway.core.audiences.view import IndexView

DIMS = {"category": ["A", "B", "C"], "industry": ["rail", "energy"]}


person = st.fixed_dictionaries(
    {
        "active": st.booleans(),
        "category": st.sets(st.sampled_from(DIMS["category"]), max_size=2),
        "industry": st.sets(st.sampled_from(DIMS["industry"]), max_size=1),
    }
)
query = st.tuples(
    st.fixed_dictionaries(
        {},
        optional={
            d: st.lists(st.sampled_from(v), min_size=1, max_size=2, unique=True)
            for d, v in DIMS.items()
        },
    ),
    st.sampled_from([None, 7]),
)


def filters_of(q: dict[str, list[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((d, tuple(sorted(v))) for d, v in q.items()))


@given(
    people=st.lists(person, min_size=1, max_size=30),
    asked=query,
    earlier=st.lists(query, min_size=1, max_size=5),
    k=st.integers(1, 8),
    warm=st.booleans(),
    counted=st.booleans(),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_telling_queries_apart_by_counts_refuses_what_comparing_sets_refuses(
    module_gateway: Flask,
    people: list[dict[str, Any]],
    asked: tuple[dict[str, list[str]], int | None],
    earlier: list[tuple[dict[str, list[str]], int | None]],
    k: int,
    warm: bool,
    counted: bool,
) -> None:
    """``counted``: the earlier queries kept with the counts they were answered for (the
    people have not changed since), else without (-1, as an older version kept them)."""
    store = module_gateway.extensions["gateway"].store.audiences
    store.r.flushdb()
    space = PersonSpace(store.shards)
    maps: dict[str, BitMap] = {}
    for i, p in enumerate(people):
        n = space.number(0, i)
        names = [CONSENT] + [active(7)] * p["active"]
        names += [from_events("category", v) for v in p["category"]]
        names += [from_trait("industry", v) for v in p["industry"]]
        for name in names:
            maps.setdefault(name, BitMap()).add(n)
    store.save_shard(0, {name: bm.serialize() for name, bm in maps.items()}, [])
    view = IndexView(store, module_gateway.extensions["gateway"].catalogue.audiences)
    view.refresh()
    pairs = [(filters_of(q), window) for q, window in earlier]
    everyone = [view.matching(f, w) for f, w in pairs]  # the sets, for the slow answer
    before = [
        Earlier(f, w, len(them) if counted else -1)
        for (f, w), them in zip(pairs, everyone, strict=True)
    ]
    slow = next(
        (
            i
            for i, them in enumerate(everyone)
            if 0
            < view.matching(filters_of(asked[0]), asked[1]).symmetric_difference_cardinality(them)
            < k
        ),
        None,
    )
    if not warm:
        view._cache.clear()  # another worker: nothing computed yet
    people_now = view.matching(filters_of(asked[0]), asked[1])
    assert first_too_close(view, people_now, before, k, max_age_s=0.0) == slow


def test_a_cold_check_matches_again_only_the_queries_it_cannot_tell_apart(
    module_gateway: Flask,
) -> None:
    """Against a query narrowed by a dimension its people all hold, counts cannot tell them
    apart: that one is matched again; one whose people lie elsewhere is not."""
    store = module_gateway.extensions["gateway"].store.audiences
    store.r.flushdb()
    space = PersonSpace(store.shards)
    everyone = BitMap(space.number(0, i) for i in range(300))
    rail = BitMap(space.number(0, i) for i in range(200))
    a = BitMap(space.number(0, i) for i in range(100))
    b = BitMap(space.number(0, i) for i in range(100, 300))
    maps = {CONSENT: everyone, from_trait("industry", "rail"): rail}
    maps |= {from_events("category", "A"): a, from_events("category", "B"): b}
    store.save_shard(0, {name: bm.serialize() for name, bm in maps.items()}, [])
    view = IndexView(store, module_gateway.extensions["gateway"].catalogue.audiences)
    view.refresh()
    asked = view.matching((("category", ("A",)),), None)  # people 0-99, all in rail
    view._cache.clear()
    view._cache[repr(((("category", ("A",)),), None))] = (view.version, 0.0, asked)
    narrowed = (("category", ("A",)), ("industry", ("rail",)))
    elsewhere = (("category", ("B",)),)
    earlier = [Earlier(elsewhere, None), Earlier(narrowed, None)]
    assert first_too_close(view, asked, earlier, 50, 0.0) is None
    assert view.cached(narrowed, None, 0.0) is not None  # matched again: its people are kept
    assert view.cached(elsewhere, None, 0.0) is None  # told apart by counts alone
    # an earlier query answered for 400 people passes at once: 100 and 400 differ by 300
    view._cache.clear()
    assert first_too_close(view, asked, [Earlier(narrowed, None, 400)], 50, 0.0) is None
    assert view.cached(narrowed, None, 0.0) is None
