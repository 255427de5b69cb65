"""A synthetic audience index of N people, written to the store as the indexer saves it, and
the distinct queries ``bench_audiences.py`` asks of it.

The HTTP path cannot make 10 M people on this machine, so the index is built directly: for
each of the store's shards (its slot groups, ``PersonSpace``), pyroaring bitmaps over that
shard's person numbers, saved with ``RedisAudienceStore.save_shard`` (the indexer's own
write: ``<tag>:aud:bm``, ``:aud:ver``, ``:aud:gen``), and ``aud:next`` set past them so that
people the gateway numbers later (the upkeep's APP subjects) get numbers of their own.

Who holds what (shares of the people, each drawn independently unless said otherwise):

* ``consent``: 70 %; ``seen``: everyone;
* activity: 15 % last active within 7 days, 40 % within 30, 70 % within 90 (nested), each
  in the ``day:<date>`` bitmap of one day of its band, so that the indexer's daily roll of
  the windows finds the same ``active:<days>`` bitmaps again;
* a home province for everyone, skewed (广东省 15 %, 浙江省 and 江苏省 12 % each, the rest
  falling off as 1/rank), and a city of it (~300 cities, 1/rank within each province);
  ``e:province`` and ``e:city`` for the 90 % whose visits GeoIP placed, ``t:province`` for the
  60 % who are platform accounts with traits;
* ``t:industry`` (20 values, 1/rank^0.8) and ``t:company_size`` (5 values) for the accounts;
* ``e:category`` from 200 product-category codes, 1/rank popularity: everyone one draw,
  60 % a second, 30 % a third, 10 % a fourth (1-4 categories each).

Random draws are Python's ``random`` with a fixed seed (synthetic data, not privacy noise),
each person's value drawn from the weights, independently for each attribute, so that
members are scattered over the numbers as real ones are.
"""

from __future__ import annotations

import json
import random
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from itertools import accumulate
from typing import Any

from pyroaring import BitMap

from gateway.core.audiences.index import (
    CONSENT,
    DAY,
    SEEN,
    PersonSpace,
    active,
    from_events,
    from_trait,
)
from gateway.core.catalogue import Catalogue, load
from gateway.core.config import DEFAULTS
from gateway.core.records import Lifetimes
from gateway.storage import RedisStorage, open_storage
from gateway.storage.audiences import RedisAudienceStore

SHARES = {"consent": 0.70, "geo": 0.90, "accounts": 0.60}
WINDOW_SHARES = {7: 0.15, 30: 0.40, 90: 0.70}  # nested: active within N days
CATEGORY_DRAWS = (1.0, 0.6, 0.3, 0.1)  # everyone a first category, 60 % a second...
CATEGORIES = 200
CITIES = 300
BIG_PROVINCES = {"广东省": 0.15, "浙江省": 0.12, "江苏省": 0.12}
# the others by rough economic weight, largest first (their share falls off as 1 / rank)
OTHER_PROVINCES = (
    "山东省", "上海市", "北京市", "福建省", "河南省", "河北省", "湖北省", "四川省", "安徽省",
    "湖南省", "天津市", "辽宁省", "重庆市", "江西省", "陕西省", "广西壮族自治区", "山西省",
    "云南省", "吉林省", "黑龙江省", "贵州省", "内蒙古自治区", "新疆维吾尔自治区", "甘肃省",
    "海南省", "宁夏回族自治区", "青海省", "香港特别行政区", "台湾省", "澳门特别行政区",
    "西藏自治区",
)  # fmt: skip
SIZE_WEIGHTS = (0.42, 0.33, 0.15, 0.05, 0.05)  # 1-19, 20-99, 100-499, 500-999, 1000+


def open_store(url: str) -> tuple[RedisStorage, Catalogue]:
    """The store at ``url`` and the catalogue, as the gateway (and its commands) open them."""
    cat = load()
    if cat.audiences is None:
        raise RuntimeError("the catalogue has no [audiences] section")
    day = 86_400_000
    store = open_storage(
        DEFAULTS | {"REDIS_URL": url},
        lifetimes=Lifetimes(day, day, day, day),  # (the bench writes no subject through it)
        limits=None,
        activity=cat.audiences.activity,
    )
    store.check_layout()  # records the layout on an empty store, as a gateway's start does
    return store, cat


def zipf(n: int, s: float = 1.0) -> list[float]:
    w = [1 / (i + 1) ** s for i in range(n)]
    total = sum(w)
    return [x / total for x in w]


@dataclass(frozen=True)
class Population:
    """The values of each dimension and how popular each is (weights summing to 1)."""

    provinces: tuple[str, ...]
    province_weights: tuple[float, ...]
    cities: dict[str, tuple[str, ...]]  # province -> its cities, largest first
    city_weights: dict[str, tuple[float, ...]]
    industries: tuple[str, ...]
    industry_weights: tuple[float, ...]
    sizes: tuple[str, ...]
    size_weights: tuple[float, ...]
    categories: tuple[str, ...]
    category_weights: tuple[float, ...]

    @staticmethod
    def of(cat: Catalogue) -> Population:
        """The dimensions' values from the catalogue (traits), cities and categories made up."""
        traits = cat.traits
        known = set(traits["province"].values)
        if set(BIG_PROVINCES) | set(OTHER_PROVINCES) != known:
            raise RuntimeError("the catalogue's provinces are not the bench's 34")
        rest = 1 - sum(BIG_PROVINCES.values())
        provinces = (*BIG_PROVINCES, *OTHER_PROVINCES)
        weights = (*BIG_PROVINCES.values(), *(rest * w for w in zipf(len(OTHER_PROVINCES))))
        short = {full: alias for alias, full in traits["province"].aliases.items()}
        cities: dict[str, tuple[str, ...]] = {}
        city_weights: dict[str, tuple[float, ...]] = {}
        for p, w in zip(provinces, weights, strict=True):
            n = max(2, round(CITIES * w))
            cities[p] = tuple(f"{short.get(p, p)}-{j + 1:02d}" for j in range(n))
            city_weights[p] = tuple(zipf(n))
        industries = tuple(traits["industry"].values)
        sizes = tuple(traits["company_size"].values)
        if len(sizes) != len(SIZE_WEIGHTS):
            raise RuntimeError("the catalogue's company sizes are not the bench's 5")
        return Population(
            provinces=provinces,
            province_weights=tuple(weights),
            cities=cities,
            city_weights=city_weights,
            industries=industries,
            industry_weights=tuple(zipf(len(industries), 0.8)),
            sizes=sizes,
            size_weights=SIZE_WEIGHTS,
            categories=tuple(f"C{i + 1:03d}" for i in range(CATEGORIES)),
            category_weights=tuple(zipf(CATEGORIES)),
        )

    @property
    def city_count(self) -> int:
        return sum(len(c) for c in self.cities.values())


# ---------------------------------------------------------------------- the index
def subset(rng: random.Random, members: Sequence[int], share: float) -> list[int]:
    """Each of ``members`` kept with probability ``share`` (to 1 / 65,536)."""
    below = round(share * 65_536)
    keys = array("H", rng.randbytes(2 * len(members)))
    return [p for p, k in zip(members, keys, strict=True) if k < below]


def assign(rng: random.Random, members: Sequence[int], weights: Sequence[float]) -> list[list[int]]:
    """``members`` split by drawing each one's value from ``weights`` (to 1 / 2^32); a
    remainder of the weights below 1 draws nothing."""
    bounds = list(accumulate(round(w * (1 << 32)) for w in weights))
    keys = array("I", rng.randbytes(4 * len(members)))
    groups: list[list[int]] = [[] for _ in range(len(weights) + 1)]
    put = [g.append for g in groups]
    for p, value in zip(members, map(partial(bisect_right, bounds), keys), strict=True):
        put[value](p)
    return groups[: len(weights)]


def shard_bitmaps(
    pop: Population, space: PersonSpace, shard: int, n: int, rng: random.Random, today: date
) -> dict[str, BitMap]:
    """The named bitmaps of one shard holding ``n`` people (numbers 0..n-1 of the shard)."""
    lo = space.number(shard, 0)
    people = range(lo, lo + n)
    maps: dict[str, BitMap] = {}

    def add(name: str, members: Sequence[int] | BitMap) -> None:
        bm = members if isinstance(members, BitMap) else BitMap(members)
        if bm:
            maps[name] = maps[name] | bm if name in maps else bm

    add(SEEN, BitMap(people))
    add(CONSENT, subset(rng, people, SHARES["consent"]))
    # activity: the day a person was last active, uniform within its band (0-6 days ago,
    # 7-29, 30-89; or none), so that the bands' shares are WINDOW_SHARES' differences
    day_weights: list[float] = []
    below, first = 0.0, 0
    for days, share in sorted(WINDOW_SHARES.items()):
        day_weights += [(share - below) / (days - first)] * (days - first)
        below, first = share, days
    by_age = [BitMap(g) for g in assign(rng, people, day_weights)]
    for age, members in enumerate(by_age):
        add(DAY + (today - timedelta(days=age)).isoformat(), members)
    for days in WINDOW_SHARES:
        add(active(days), BitMap.union(BitMap(), *by_age[:days]))
    # home: a city, hence its province
    geo = BitMap(subset(rng, people, SHARES["geo"]))
    accounts = subset(rng, people, SHARES["accounts"])
    account_set = BitMap(accounts)
    flat = [
        (province, city, pw * cw)
        for province, pw in zip(pop.provinces, pop.province_weights, strict=True)
        for city, cw in zip(pop.cities[province], pop.city_weights[province], strict=True)
    ]
    homes: dict[str, BitMap] = {}
    in_cities = assign(rng, people, [w for *_, w in flat])
    for (province, city, _), members in zip(flat, in_cities, strict=True):
        in_city = BitMap(members)
        homes[province] = homes[province] | in_city if province in homes else in_city
        add(from_events("city", city), in_city & geo)
    for province, home in homes.items():
        add(from_events("province", province), home & geo)
        add(from_trait("province", province), home & account_set)
    for dim, values, weights in (
        ("industry", pop.industries, pop.industry_weights),
        ("company_size", pop.sizes, pop.size_weights),
    ):
        for value, members in zip(values, assign(rng, accounts, weights), strict=True):
            add(from_trait(dim, value), members)
    for share in CATEGORY_DRAWS:
        drawn = assign(rng, subset(rng, people, share), pop.category_weights)
        for code, members in zip(pop.categories, drawn, strict=True):
            add(from_events("category", code), members)
    return maps


def build_index(
    store: RedisAudienceStore,
    pop: Population,
    people: int,
    seed: int,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Every shard's bitmaps made and saved as the indexer saves them; what was written."""
    space = PersonSpace(store.shards)
    today = datetime.now(UTC).date()
    names: set[str] = set()
    blobs = 0
    for shard in range(store.shards):
        n = people // store.shards + (shard < people % store.shards)
        maps = shard_bitmaps(pop, space, shard, n, random.Random(seed * 1_000 + shard), today)
        changed = {}
        for name, bm in maps.items():
            bm.run_optimize()
            changed[name] = bm.serialize()
        store.save_shard(shard, changed, [])
        store.r.set(store.keys.audience(shard, "next"), n)  # the gateway numbers after them
        names.update(maps)
        blobs += sum(len(b) for b in changed.values())
        if shard % 16 == 15:
            progress(f"  {shard + 1}/{store.shards} shards saved")
    return {"bitmaps_per_shard_max": len(names), "serialized_bytes": blobs}


# ---------------------------------------------------------------------- the queries
def _pick(rng: random.Random, values: Sequence[str], weights: Sequence[float], k: int) -> list[str]:
    """``k`` distinct values, each drawn by popularity (marketers ask about big segments)."""
    k = min(k, len(values))
    out: list[str] = []
    while len(out) < k:
        v = rng.choices(values, weights)[0]
        if v not in out:
            out.append(v)
    return out


def canonical(filters: dict[str, Any]) -> str:
    return json.dumps(
        {k: sorted(v) if isinstance(v, list) else v for k, v in filters.items()},
        ensure_ascii=False,
        sort_keys=True,
    )


def one_filter(
    rng: random.Random, pop: Population, dims: Sequence[str], window_share: float = 0.5
) -> dict[str, Any]:
    """Filters on ``dims`` with 1-3 values each (cities within the provinces asked, if any),
    and an activity window half the time."""
    f: dict[str, Any] = {}
    provinces = None
    if "province" in dims:
        provinces = _pick(rng, pop.provinces, pop.province_weights, rng.randint(1, 3))
        f["province"] = provinces
    for dim in dims:
        k = rng.randint(1, 3)
        if dim == "category":
            f[dim] = _pick(rng, pop.categories, pop.category_weights, k)
        elif dim == "industry":
            f[dim] = _pick(rng, pop.industries, pop.industry_weights, k)
        elif dim == "company_size":
            f[dim] = _pick(rng, pop.sizes, pop.size_weights, k)
        elif dim == "city":
            where = provinces or _pick(rng, pop.provinces, pop.province_weights, 1)
            cities = [
                (c, w)
                for p in where
                for c, w in zip(pop.cities[p], pop.city_weights[p], strict=True)
            ]
            f[dim] = _pick(rng, [c for c, _ in cities], [w for _, w in cities], k)
    if rng.random() < window_share:
        f["active_within_days"] = rng.choice(sorted(WINDOW_SHARES))
    return f


DIMENSIONS = ("category", "industry", "company_size", "province", "city")


def queries(
    pop: Population, estimates: int, breakdowns: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Distinct estimate filters (3-5 dimensions) and distinct filters for breakdowns by
    province (1-3 dimensions other than province and city): each a fresh question."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for want, kept, dims, sizes in (
        (estimates, out[0], DIMENSIONS, (3, 5)),
        (breakdowns, out[1], ("category", "industry", "company_size"), (1, 3)),
    ):
        for _ in range(1000 * want):
            if len(kept) == want:
                break
            f = one_filter(rng, pop, rng.sample(dims, rng.randint(*sizes)))
            key = canonical(f)
            if key not in seen:
                seen.add(key)
                kept.append(f)
    return out
