"""Retention: keep each purpose's events no longer than the catalogue says (policy clause 4).

Stream ids are millisecond timestamps, so a purpose's retention is one ``XTRIM MINID`` per
stream of the purpose (one per slot group). The gateway runs it by itself every
``RETENTION_EVERY_S`` (default an hour), once across every worker and gateway sharing the
store, whatever the store (the embedded one too): ``run``; ``gateway retention`` runs it now
for an operator. Per-subject index entries that point at trimmed parts are skipped by
``GET /v1/subject`` and expire with the index itself. The consent ledger is the legal record
of consent and is not trimmed here.
"""

from __future__ import annotations

import logging
import time

from .catalogue import Catalogue
from .ports import EventStore
from .records import RetentionRun

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


def apply(store: EventStore, cat: Catalogue, now_ms: int | None = None) -> dict[str, int]:
    """Trim every purpose's streams to its retention; entries removed per purpose."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    removed: dict[str, int] = {}
    for purpose in cat.optional_purposes:
        min_id = now_ms - cat.purposes[purpose].retention_days * DAY_MS
        removed[purpose] = store.trim_before(purpose, min_id)
    return removed


def run(
    store: EventStore, cat: Catalogue, every_s: float, *, force: bool = False
) -> RetentionRun | None:
    """``apply`` if its period passed since any process last ran it (``force``: now); the run,
    or None when it was not this caller's to do."""
    done = store.run_retention(int(every_s * 1000), lambda: apply(store, cat), force=force)
    if done is not None and any(done.removed.values()):
        removed = ", ".join(f"{p} {n}" for p, n in done.removed.items() if n)
        log.info("retention: stream entries past their purpose's period removed: %s", removed)
    return done
