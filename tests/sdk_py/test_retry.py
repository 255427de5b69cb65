"""Backoff: full jitter under an exponential cap, Retry-After as a floor."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from sdk_py.retry import Backoff, retry_after, retryable


def test_delays_are_full_jitter_under_a_doubling_cap() -> None:
    b = Backoff(base=1, cap=8, rng=random.Random(7))
    ceilings = [1, 2, 4, 8, 8, 8]
    for ceiling in ceilings:
        assert 0 <= b.next_delay() <= ceiling
    spread = {
        round(Backoff(base=1, cap=8, rng=random.Random(i)).next_delay(), 3) for i in range(50)
    }
    assert len(spread) > 40  # jittered, not in step


def test_reset_starts_again_from_the_base() -> None:
    b = Backoff(base=1, cap=100, rng=random.Random(1))
    for _ in range(6):
        b.next_delay()
    b.reset()
    assert b.next_delay() <= 1


def test_retry_after_is_a_floor_and_capped() -> None:
    b = Backoff(base=0.01, cap=0.02, max_retry_after=30)
    assert b.next_delay(5) == 5
    assert b.next_delay(10_000) == 30


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after("3") == 3
    assert retry_after("Tue, 01 Dec 2026 12:00:10 GMT", now) == 10
    assert retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now) == 0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_what_is_worth_retrying() -> None:
    assert all(retryable(s) for s in (408, 429, 500, 502, 503, 504))
    assert not any(retryable(s) for s in (400, 401, 403, 404, 413, 415))
