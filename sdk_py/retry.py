"""When to send again: exponential backoff with full jitter, ``Retry-After`` as a floor.

Full jitter (a random delay between 0 and the exponential cap) spreads the retries of many
APPs that lost the gateway at the same moment, so they do not return in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 429})


def retryable(status: int) -> bool:
    """Statuses worth sending again: timeouts, rate limits and every server error."""
    return status in RETRY_STATUSES or status >= 500


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class Backoff:
    """Delays for consecutive failures; ``reset`` after a success."""

    base: float = 0.5
    cap: float = 60.0
    max_retry_after: float = 3600.0  # a server asking for longer is not believed beyond this
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self, floor: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        delay = self.rng.uniform(0, ceiling)
        if floor is not None:
            delay = max(delay, min(floor, self.max_retry_after))
        return delay

    def reset(self) -> None:
        self.attempt = 0
