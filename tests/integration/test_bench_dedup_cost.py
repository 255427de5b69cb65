"""``bench/dedup_cost.py`` runs, in a small form: it finds the call a real 100-event post went
out in (client ids: deduplicated), replays it with fresh ids, with and without dedup, before
and after growing the subject's dedup set, and reads Valkey's cost of each."""

from __future__ import annotations

import re

from .probes import run_bench


def test_the_dedup_probe_reads_each_case_and_grows_the_set() -> None:
    out = run_bench("dedup_cost.py", "--calls", "20", "--grow", "3000")
    rows = re.findall(
        r"(no dedup|dedup) +\(dedup set +([0-9,]+) ids\): Valkey +([0-9.]+) µs an event, "
        r"+([0-9.]+) inside the script",
        out,
    )
    assert [r[0] for r in rows] == ["dedup", "no dedup", "dedup", "no dedup"], out
    sizes = [int(r[1].replace(",", "")) for r in rows]
    # the post's 100 ids, then 20 writes of 100 fresh ones; the flagged writes add none
    assert sizes[:2] == [100, 2100], sizes
    assert sizes[2] >= 3000 and sizes[3] == sizes[2] + 2000, sizes
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows), out
