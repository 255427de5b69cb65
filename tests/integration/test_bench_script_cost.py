"""``bench/script_cost.py`` runs, in a small form: it finds the call a real beacon's write went
out in (minted id, so its copies store again) and reads Valkey's cost of it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_script_cost_probe_runs_and_reads_every_size() -> None:
    done = subprocess.run(
        [sys.executable, "bench/script_cost.py", "--calls", "64", "--tries", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("return 1", "one XADD", "events.lua"):
        assert re.search(rf"{re.escape(name)} +Valkey +[0-9.]+ µs a call", done.stdout), done.stdout
    sizes = re.findall(r"calls of +(\d+): Valkey +([0-9.]+) µs a write", done.stdout)
    assert [int(n) for n, _ in sizes] == [1, 4, 16, 32]
    assert all(float(us) > 0 for _, us in sizes)
