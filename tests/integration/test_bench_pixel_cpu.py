"""``bench/pixel_cpu.py`` runs, in a small form, and measures a pixel that answers 200 (its
child checks every status: a probe of refused beacons would read fast and mean nothing) of
the checkout it names (``serving.gateway_in_process`` refuses another one)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .probes import ROOT, run_bench


def test_the_pixel_cpu_probe_runs_and_reads_a_cost() -> None:
    out = run_bench("pixel_cpu.py", "--tries", "1", "--rounds", "2", "--beacons", "60")
    found = re.search(
        r"best ([0-9.]+) us of CPU a beacon, rounds \[(\d+), (\d+)\] \(gateway from (.+)\)",
        out,
    )
    assert found is not None, out
    assert 0 < float(found.group(1)) < 100_000
    # the checkout it was asked to measure, not whichever gateway an import found first
    assert Path(found.group(4)) == ROOT / "gateway" / "__init__.py"


def test_the_probe_measures_another_checkout_when_named(tmp_path: Path) -> None:
    """Comparing a change with its base means importing the base's ``gateway``, though the
    probe's own helpers import this checkout's first."""
    other = tmp_path / "other"
    shutil.copytree(ROOT / "gateway", other / "gateway", ignore=shutil.ignore_patterns("*.pyc"))
    small = ["--tries", "1", "--rounds", "1", "--beacons", "30"]
    out = run_bench("pixel_cpu.py", str(other), *small)
    assert f"(gateway from {other / 'gateway' / '__init__.py'})" in out, out
