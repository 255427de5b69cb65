"""What a count becomes before a marketer sees it: nothing below the floor, else the count
with noise from OpenDP's discrete Laplace mechanism, rounded to two significant digits, with
the interval the true count lies in (95 % sure) given what was released.

A count of people changes by at most one when one person joins or leaves (people, not
devices: an account's subjects are one person), so noise of scale ``1 / epsilon`` makes one
release epsilon-differentially private; OpenDP draws it from the operating system's secure
randomness (it cannot be seeded, and is not). The floor is applied to the true count, as
Google Ads Data Hub and Protected Audience apply theirs: a released number is never below the
floor, and an answer below it says only "fewer than k".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import opendp.prelude as dp

dp.enable_features("contrib")  # OpenDP's mechanisms not yet formally vetted by its team

CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Released:
    estimate: int | None
    range: tuple[int, int] | None

    @property
    def below_threshold(self) -> bool:
        return self.estimate is None

    def shown(self) -> dict[str, Any]:
        """As an answer shows it."""
        return {
            "estimate": self.estimate,
            "range": list(self.range) if self.range else None,
            "below_threshold": self.below_threshold,
        }


@cache
def mechanism(epsilon: float) -> Any:
    """OpenDP's discrete Laplace measurement of a count (sensitivity 1) at ``epsilon``."""
    scale = 1.0 / epsilon
    meas = dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=scale)
    spent = meas.map(1)  # type: ignore[no-untyped-call]
    if spent > epsilon * (1 + 1e-9):  # OpenDP's own accounting must agree with ours
        raise ValueError(f"OpenDP reports epsilon {spent} for scale {scale}, not {epsilon}")
    return meas


@cache
def vector_mechanism(epsilon: float, cells: int) -> Any:
    """OpenDP's discrete Laplace measurement of ``cells`` counts at once, ``epsilon`` for all
    of them: a person may be in every cell (a visitor seen in several provinces), so the
    counts' L1 sensitivity is ``cells`` and each count gets noise of scale ``cells / epsilon``,
    the same as ``cells`` releases at ``epsilon / cells`` each, in one draw (34 draws of one
    count cost 26 ms here, one of 34 counts 2 ms)."""
    scale = cells / epsilon
    meas = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale
    )
    spent = meas.map(cells)  # type: ignore[no-untyped-call]
    if spent > epsilon * (1 + 1e-9):
        raise ValueError(f"OpenDP reports epsilon {spent} for {cells} cells, not {epsilon}")
    return meas


def half_width(epsilon: float) -> float:
    """|noise| stays within this with probability CONFIDENCE at least: OpenDP's discrete
    Laplace of scale 1/ε has P(|X| >= m) = 2 a^m / (1 + a), a = e^-ε, and this is the
    smallest whole h with P(|X| > h) <= 1 - CONFIDENCE. (The continuous Laplace's
    b ln(1 / (1 - c)), 5.99 at ε 0.5, held the discrete noise 93.8 % of the time, not 95.)"""
    alpha = math.exp(-epsilon)
    m = math.ceil(math.log((1 - CONFIDENCE) * (1 + alpha) / 2) / math.log(alpha))
    return float(max(m - 1, 0))


def two_digits(x: float) -> int:
    """``x`` rounded to two significant digits (0 stays 0)."""
    if x <= 0:
        return 0
    step = _step(round(x))
    return round(x / step) * step


def release(true_count: int, epsilon: float, floor: int) -> Released:
    """The answer for ``true_count`` people."""
    if true_count < floor:
        return Released(None, None)
    return _shown(int(mechanism(epsilon)(true_count)), epsilon, floor)


def release_many(true_counts: list[int], epsilon: float, floor: int) -> list[Released]:
    """The answers for several counts a person may all be in, ``epsilon`` for them all:
    those below the floor get no number (and no noise), the others share the budget."""
    above = [n for n in true_counts if n >= floor]
    if not above:
        return [Released(None, None) for _ in true_counts]
    each = epsilon / len(above)
    noisy = iter(vector_mechanism(epsilon, len(above))(above))
    return [
        _shown(int(next(noisy)), each, floor) if n >= floor else Released(None, None)
        for n in true_counts
    ]


def _shown(noisy: int, epsilon: float, floor: int) -> Released:
    """A noisy count as released: two digits, never below the floor, with its range."""
    shown = max(two_digits(noisy), floor)
    # From what is shown alone (the noisy count itself stays unseen): the noisy count lay
    # within half a rounding step of it, the true count within the noise's width of that.
    slack = _step(shown) / 2 + half_width(epsilon)
    lo = max(floor, two_digits_down(math.floor(shown - slack)))  # it is at least the floor
    hi = two_digits_up(math.ceil(shown + slack))
    return Released(shown, (lo, hi))


def _step(x: int) -> int:
    """The rounding step of two significant digits at ``x``: 1 below 100, 10 below 1,000..."""
    step: int = 10 ** max(len(str(max(x, 1))) - 2, 0)
    return step


def two_digits_down(x: int) -> int:
    return x // _step(x) * _step(x)


def two_digits_up(x: int) -> int:
    return -(-x // _step(x)) * _step(x)
