"""``bench/pixel_cpu.py`` runs, in a small form, and measures a pixel that answers 200 (its
child checks every status: a probe of refused beacons would read fast and mean nothing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_pixel_cpu_probe_runs_and_reads_a_cost() -> None:
    done = subprocess.run(
        [sys.executable, "bench/pixel_cpu.py", "--tries", "1", "--rounds", "2", "--beacons", "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"best ([0-9.]+) us of CPU a beacon, rounds \[(\d+), (\d+)\]", done.stdout)
    assert found is not None, done.stdout
    assert 0 < float(found.group(1)) < 100_000
