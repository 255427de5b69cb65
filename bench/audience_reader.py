"""A reader of the audience index in a process of its own (``bench_audiences.py`` spawns it):
what loading every shard's bitmaps costs, and the queries' set algebra done two ways.

* memory: ``VmRSS`` (``/proc/self/status``) before and after ``IndexView.refresh()`` loads
  every shard into one set of merged bitmaps, beside ``IndexView.memory_bytes()`` (CRoaring's
  count of the bitmaps' bytes); a fresh process, so that no freed memory of the data's
  making is reused and hidden;
* bitmaps: ``IndexView.matching`` per estimate (each filter set distinct: never the view's
  cache), and per breakdown by province its ``matching`` and the cells'
  ``intersection_cardinality``, as ``core/audiences/service.py`` does them;
* the difference check per estimate against the 20 before it (``first_too_close``), with
  the view's cache warm (as the HTTP part sees it, and as a reader keeps an earlier query's
  people for 5 minutes whatever the index does) and cold (a process that has not computed
  the earlier queries, such as another worker: each of the 20 told apart by counts, or
  matched again);
* plain Python sets over the same people: each bitmap the queries name turned into a
  ``set`` of its person numbers first (not timed; the sets' memory is measured the same
  way), then per query the same algebra timed: each dimension's values united, the sets
  intersected smallest first, counted; a breakdown's cells as ``len((base & e) | (base &
  t))`` (the province's event and trait sets, without uniting the big ones). The counts
  must equal the bitmaps'.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from audience_data import open_store
from pyroaring import BitMap

from gateway.core.audiences.difference import Earlier, first_too_close
from gateway.core.audiences.index import CONSENT, active, from_events, from_trait
from gateway.core.audiences.service import Query, Settings, parse_filters
from gateway.core.audiences.view import Filters, IndexView

RECENT = Settings().recent  # the key's recent queries a check compares with (20)


def vm_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class SetIndex:
    """The view's bitmaps as Python sets, made on first use."""

    def __init__(self, view: IndexView) -> None:
        self.view = view
        self.sets: dict[str, set[int]] = {}

    def get(self, name: str) -> set[int]:
        found = self.sets.get(name)
        if found is None:
            found = self.sets[name] = set(self.view.maps.peek(name) or BitMap())
        return found

    def names(self, filters: Filters, active_within: int | None, by: str | None) -> list[str]:
        out = [CONSENT] + ([active(active_within)] if active_within else [])
        for d, values in filters:
            out += [f(d, v) for v in values for f in (from_events, from_trait)]
        if by:
            out += [f(by, v) for v in self.view.values(by) for f in (from_events, from_trait)]
        return out

    def matching(self, filters: Filters, active_within: int | None) -> set[int]:
        sets = [self.get(CONSENT)]
        if active_within is not None:
            sets.append(self.get(active(active_within)))
        for d, values in filters:
            parts = [self.get(f(d, v)) for v in values for f in (from_events, from_trait)]
            parts = [s for s in parts if s]
            sets.append(set().union(*parts) if len(parts) != 1 else parts[0])
        sets.sort(key=len)
        return sets[0].intersection(*sets[1:])

    def cells(self, base: set[int], by: str) -> list[int]:
        return [
            len((base & self.get(from_events(by, v))) | (base & self.get(from_trait(by, v))))
            for v in self.view.values(by)
        ]


def difference_checks(
    view: IndexView, est: list[Query], compare: int
) -> tuple[list[float], list[float]]:
    """Per estimate with RECENT earlier ones: the difference check (``first_too_close``,
    as the service runs it), with the view's cache as the queries left it (the index still),
    and cold: as after any move of the index, which drops a reader's cache (while events
    come in, the indexer saves every second), or in a worker that answered none of them."""
    warm, cold = [], []
    k = Settings().k
    for i in range(RECENT, min(len(est), RECENT + compare)):
        q, people = est[i], view.matching(est[i].filters, est[i].active_within)
        earlier = [  # as the queries left the cache, with the counts they were answered for
            Earlier(e.filters, e.active_within, len(view.matching(e.filters, e.active_within)))
            for e in est[i - RECENT : i]
        ]
        for times in (warm, cold):
            if times is cold:
                view.version += 1  # what refresh() does when anything moved
                people = view.matching(q.filters, q.active_within)
            t = time.perf_counter()
            first_too_close(view, people, earlier, k, max_age_s=0.0)
            times.append(time.perf_counter() - t)
    return warm, cold


def measure_reader(
    url: str, estimates: list[dict[str, Any]], breakdowns: list[dict[str, Any]], compare: int
) -> dict[str, Any]:
    """Run in a fresh process: the figures described above."""
    store, cat = open_store(url)
    rules = cat.audiences
    assert rules is not None
    view = IndexView(store.audiences, rules)
    rss0, t0 = vm_kib(), time.perf_counter()
    view.refresh()
    load_s = time.perf_counter() - t0
    rss1 = vm_kib()
    out: dict[str, Any] = {
        "load_s": load_s,
        "rss_before_kib": rss0,
        "rss_growth_bytes": (rss1 - rss0) * 1024,
        "memory_bytes": view.memory_bytes(),
        "bitmaps": len(view.maps.maps),
        "people_counted": len(view.people()),
    }
    est = [parse_filters(f, rules) for f in estimates]
    brk = [parse_filters(f, rules) for f in breakdowns]
    bitmap_est, counts = [], []
    for q in est:
        t = time.perf_counter()
        counts.append(len(view.matching(q.filters, q.active_within)))
        bitmap_est.append(time.perf_counter() - t)
    bitmap_brk, cells = [], []
    for q in brk:
        t = time.perf_counter()
        base = view.matching(q.filters, q.active_within)
        row = [
            base.intersection_cardinality(view.value("province", v))
            for v in view.values("province")
        ]
        bitmap_brk.append(time.perf_counter() - t)
        cells.append(row)
    out.update(bitmap_estimate_s=bitmap_est, bitmap_breakdown_s=bitmap_brk, counts=counts)
    out["difference_warm_s"], out["difference_cold_s"] = difference_checks(view, est, compare)
    # the same work with Python sets, on the first `compare` queries of each kind
    sets = SetIndex(view)
    est, brk = est[:compare], brk[:compare]
    rss2, t0 = vm_kib(), time.perf_counter()
    for q in est:
        for name in sets.names(q.filters, q.active_within, None):
            sets.get(name)
    for q in brk:
        for name in sets.names(q.filters, q.active_within, "province"):
            sets.get(name)
    out["sets_made_s"] = time.perf_counter() - t0
    out["sets_growth_bytes"] = (vm_kib() - rss2) * 1024
    out["sets_members"] = sum(len(s) for s in sets.sets.values())
    out["sets_count"] = len(sets.sets)
    set_est, set_brk, same = [], [], True
    for q, n in zip(est, counts, strict=False):
        t = time.perf_counter()
        found = len(sets.matching(q.filters, q.active_within))
        set_est.append(time.perf_counter() - t)
        same = same and found == n
    for q, row in zip(brk, cells, strict=False):
        t = time.perf_counter()
        found_row = sets.cells(sets.matching(q.filters, q.active_within), "province")
        set_brk.append(time.perf_counter() - t)
        same = same and found_row == row
    out.update(set_estimate_s=set_est, set_breakdown_s=set_brk, same_counts=same)
    out["peak_rss_bytes"] = vm_kib("VmHWM") * 1024
    store.close()
    return out
