"""The difference check (docs/audiences.md): a query whose people differ from one of the
key's recent queries' by 1 to k - 1 would single those people out, whatever the noise.

First by counts: two answers whose true counts differed by k or more cannot single out fewer
than k people, so an earlier query whose count when it was answered (kept with it) differs
from this one's by k or more passes at once; with distinct queries that is nearly all of
them. The others are compared as sets: an earlier query's people as a reader last computed
them (within ``max_age_s``, while the index moves), else computed again. Computing them
again is the expensive part: a worker that had not answered the earlier queries matched all
20 again, 76-85 ms at 10 M people (bench/bench_audiences.py). Most are told apart without
it: at least k of this query's people lie outside one of the earlier query's dimensions (or
its activity window) when, for that dimension, fewer than ``len(people) - k + 1`` of them
hold any of its values; then ``|this \\ earlier| >= k`` and so ``|this △ earlier| >= k``,
counted with ``intersection_cardinality`` alone. Only an earlier query that may hold nearly
all of this one's people (a narrowing or a widening of it, the cases the check is for) is
matched again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pyroaring import BitMap

from .view import Filters, IndexView


class Earlier(NamedTuple):
    """An earlier released query: its filters, activity window, and the true count it was
    answered for (-1: not known)."""

    filters: Filters
    window: int | None
    answered_for: int = -1


def first_too_close(
    view: IndexView,
    people: BitMap,
    earlier: Sequence[Earlier],
    k: int,
    max_age_s: float,
) -> int | None:
    """The index of the first earlier query whose people differ from ``people`` by 1 to
    ``k - 1``, or None."""
    n = len(people)
    for i, (filters, window, answered_for) in enumerate(earlier):
        if answered_for >= 0 and abs(n - answered_for) >= k:
            continue
        before = view.cached(filters, window, max_age_s)
        if before is None:
            if _apart(view, people, n, filters, window, k):
                continue
            before = view.matching(filters, window, max_age_s=max_age_s)
        if abs(n - len(before)) >= k:  # they differ by that many at least
            continue
        if 0 < people.symmetric_difference_cardinality(before) < k:
            return i
    return None


def _apart(
    view: IndexView, people: BitMap, n: int, filters: Filters, window: int | None, k: int
) -> bool:
    """Whether at least ``k`` of ``people`` surely lie outside the earlier query's people."""
    if window is not None and n - people.intersection_cardinality(view.window(window)) >= k:
        return True
    for dimension, values in filters:
        inside = sum(people.intersection_cardinality(view.value(dimension, v)) for v in values)
        if n - inside >= k:  # the values may overlap: the sum is at least those inside
            return True
    return False
