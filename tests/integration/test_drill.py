"""The drill (bench/drill.py) in its short, bounded form: through the front, a mixed load
(beacons, APP batches through sdk_py with a spool, consent changes) while a gateway instance
is killed with SIGKILL and restarted, and the store is killed with SIGKILL and restarted from
its append-only file. Every acknowledged event is in the store exactly once, every
acknowledged consent on its ledger, and nginx limits at the configured rate.

The longer run, and the cluster's failover, are bench/drill.py's (docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench.drill import EVENTS_RATE, run

pytestmark = pytest.mark.slow


def test_nothing_acknowledged_is_lost_or_duplicated_through_kills() -> None:
    result = run(8, visitors=3, apps=2, changers=1, log=lambda _: None)
    assert result.faults == [
        result.faults[0],
        result.faults[1],
        "kill -9 store",
        "store restarted from its AOF",
    ]
    assert result.faults[0].startswith("kill -9 gateway")
    assert result.acknowledged_events > 100 and result.acknowledged_consents > 5
    assert result.lost_events == 0 and result.duplicated_events == 0
    assert result.lost_consents == 0
    # what was refused during the faults was said so (never a 2xx): 503s while the store
    # was away, 429s from the front
    assert set(result.refused) <= {"429", "503", "none"}, result.refused
    assert result.onset_error is not None and result.onset_error <= 0.10, (
        result.onset_rate,
        EVENTS_RATE,
    )
