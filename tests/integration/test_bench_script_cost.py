"""``bench/script_cost.py`` runs, in a small form: it finds the call a real beacon's write went
out in (minted id, so its copies store again) and reads Valkey's cost of it."""

from __future__ import annotations

import re

from .probes import run_bench


def test_the_script_cost_probe_runs_and_reads_every_size() -> None:
    out = run_bench("script_cost.py", "--calls", "64", "--tries", "1")
    for name in ("return 1", "one XADD", "events.lua"):
        assert re.search(rf"{re.escape(name)} +Valkey +[0-9.]+ µs a call", out), out
    sizes = re.findall(r"calls of +(\d+): Valkey +([0-9.]+) µs a write", out)
    assert [int(n) for n, _ in sizes] == [1, 4, 16, 32]
    assert all(float(us) > 0 for _, us in sizes)
