"""Retention: keep each purpose's events no longer than the catalogue says (policy clause 4).

Stream ids are millisecond timestamps, so a purpose's retention is one ``XTRIM MINID`` per
stream of the purpose (one per slot group). Run it periodically (``gateway retention``, e.g.
hourly from cron or a systemd timer). Per-subject index entries that point at trimmed parts
are skipped by
``GET /v1/subject`` and expire with the index itself. The consent ledger is the legal record
of consent and is not trimmed here.
"""

from __future__ import annotations

import time

from .catalogue import Catalogue
from .ports import EventStore

DAY_MS = 86_400_000


def apply(store: EventStore, cat: Catalogue, now_ms: int | None = None) -> dict[str, int]:
    """Trim every purpose's streams to its retention; entries removed per purpose."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    removed: dict[str, int] = {}
    for purpose in cat.optional_purposes:
        min_id = now_ms - cat.purposes[purpose].retention_days * DAY_MS
        removed[purpose] = store.trim_before(purpose, min_id)
    return removed
