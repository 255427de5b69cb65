"""Retention by itself: one run per period across every worker and gateway sharing the store.

Each serving process looks now and then (``Periodic``); the one that finds the period passed
takes the store's lock, looks again (another may have just run), runs, and records the run
(``gw:retention``: when, what each purpose lost, how many runs) for every gateway's
``/metrics`` and for the next look. A process that dies mid-run leaves the lock to lapse, and
the run is due again: trimming twice removes nothing twice (``XTRIM MINID``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from ..core.records import RetentionRun
from .client import Client, lua, translating
from .periodic import store_lock

STATE = "gw:retention"
LOCK = "gw:lock:retention"
LOCK_MS = 10 * 60_000  # a run trims one stream per purpose and slot group: seconds, at most


class RetentionSchedule:
    def __init__(self, client: Client) -> None:
        self.r = client
        self._release = client.register_script(lua("lock_release"))

    @translating
    def last_run(self) -> RetentionRun | None:
        state = cast("dict[str, str]", self.r.hgetall(STATE))
        if "at" not in state:
            return None
        removed = {k[2:]: int(v) for k, v in state.items() if k.startswith("r:")}
        return RetentionRun(int(state["at"]), removed, int(state.get("runs", 0)))

    @translating
    def run_if_due(
        self, every_ms: int, work: Callable[[], Mapping[str, int]], *, force: bool = False
    ) -> RetentionRun | None:
        """``work()`` (the trim) if the last run is ``every_ms`` old (or ``force``), under the
        store's lock; the run recorded, or None when it was not due or another ran it."""
        if not force and not self._due(every_ms):
            return None
        with store_lock(self.r, self._release, LOCK, LOCK_MS) as held:
            if not held or not (force or self._due(every_ms)):
                return None
            removed = dict(work())
            at = int(time.time() * 1000)
            # every purpose's count is written each run (zeros too): nothing stale stays
            pipe: Any = self.r.pipeline(transaction=False)
            pipe.hset(STATE, mapping={"at": at, **{f"r:{p}": n for p, n in removed.items()}})
            pipe.hincrby(STATE, "runs", 1)
            results = pipe.execute()
            return RetentionRun(at, removed, int(results[-1]))

    def _due(self, every_ms: int) -> bool:
        at = self.r.hget(STATE, "at")
        return at is None or int(time.time() * 1000) - int(at) >= every_ms
