"""What a count becomes before a marketer sees it (``core/audiences/release.py``): never a
number below the floor, two significant digits, a range that holds the true count as often
as it says, and OpenDP's own accounting agreeing with the budget's."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.audiences.release import (
    CONFIDENCE,
    half_width,
    mechanism,
    release,
    two_digits,
    two_digits_down,
    two_digits_up,
)


@given(st.integers(0, 10**8), st.sampled_from([0.1, 0.5, 1.0, 2.0]), st.integers(50, 500))
@settings(max_examples=300, deadline=None)
def test_nothing_below_the_floor_and_two_significant_digits(
    true: int, epsilon: float, floor: int
) -> None:
    r = release(true, epsilon, floor)
    if true < floor:
        assert r.estimate is None and r.range is None and r.below_threshold
        return
    assert r.estimate is not None and r.range is not None
    assert r.estimate >= floor
    assert r.estimate == floor or len(str(r.estimate).rstrip("0")) <= 2
    lo, hi = r.range
    assert floor <= lo <= r.estimate <= hi
    assert lo == floor or two_digits_down(lo) == lo
    assert two_digits_up(hi) == hi


def test_the_range_holds_the_true_count_at_least_as_often_as_it_says() -> None:
    ranges = [release(137, 0.5, 100).range for _ in range(2_000)]
    misses = sum(1 for r in ranges if r is None or not r[0] <= 137 <= r[1])
    assert misses <= 2_000 * (1 - CONFIDENCE)  # rounding only widens it


@pytest.mark.parametrize("epsilon", [0.05, 0.5, 1.0, 2.0])
def test_the_half_width_holds_the_discrete_noise_as_often_as_it_says(epsilon: float) -> None:
    """Exactly, from the discrete Laplace's distribution: P(|X| <= h) >= CONFIDENCE, and
    h is the smallest whole number for which that holds."""
    alpha = math.exp(-epsilon)

    def outside(h: float) -> float:  # P(|X| > h) = P(|X| >= floor(h) + 1)
        return 2 * alpha ** (math.floor(h) + 1) / (1 + alpha)

    h = half_width(epsilon)
    assert outside(h) <= 1 - CONFIDENCE < outside(h - 1)


def test_the_noise_is_real_and_as_wide_as_epsilon_says() -> None:
    """2,000 of OpenDP's draws (from the OS's randomness: not seedable) inside the half
    width as often as the distribution says, within five standard deviations (a wrong
    scale, half or twice as wide, lands far outside)."""
    draws = [int(mechanism(0.5)(10_000)) for _ in range(2_000)]
    assert len(set(draws)) > 10  # noise, not a constant
    alpha = math.exp(-0.5)
    p = 1 - 2 * alpha ** (half_width(0.5) + 1) / (1 + alpha)  # 0.962
    sigma = math.sqrt(p * (1 - p) / len(draws))
    inside = sum(abs(d - 10_000) <= half_width(0.5) for d in draws) / len(draws)
    assert p - 5 * sigma <= inside <= p + 5 * sigma
    assert mechanism(0.5).map(1) == pytest.approx(0.5)  # OpenDP's own accounting


@pytest.mark.parametrize(
    ("x", "shown"),
    [
        (0, 0),
        (7, 7),
        (99, 99),
        (100, 100),
        (104, 100),
        (106, 110),
        (994, 990),
        (999, 1000),
        (12_345, 12_000),
        (9_960_000, 10_000_000),
    ],
)
def test_two_significant_digits(x: int, shown: int) -> None:
    assert two_digits(x) == shown
