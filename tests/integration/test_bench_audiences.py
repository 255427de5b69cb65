"""``bench/bench_audiences.py`` runs, in a small form: a bench that nothing runs breaks
unseen (its reader counted bitmaps with a ``len()`` that a tidy-up had removed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_audience_bench_runs_and_its_counts_agree(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    small = "--people 1000000 --queries 8 --breakdowns 3 --warmup-queries 2 --compare 4"
    small += " --rounds 1 --seconds 1 --warmup 1 --subjects 2 --batch 50"
    done = subprocess.run(
        [sys.executable, "bench/bench_audiences.py", *small.split(), "--no-docs", "--json", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["reader"]["same_counts"] is True  # bitmaps count what plain sets count
    assert res["reader"]["memory_bytes"] > 0 and res["index"]["bitmaps_per_shard_max"] > 0
    for kind, n in (("estimate", 8), ("breakdown", 3)):
        outcomes = res["http"][kind]["outcomes"]
        assert sum(outcomes.values()) == n
        assert set(outcomes) <= {"released", "below_threshold", "too_close_to_earlier_query"}
    released = [
        res["http"][kind]["outcomes"].get("released", 0) for kind in ("estimate", "breakdown")
    ]
    assert sum(released) >= 1  # noise, budget, difference checks and audit on the way
    for mode in ("on", "off"):
        (round_,) = res["upkeep"][mode]
        assert round_["errors"] == 0 and round_["stored"] > 0
    assert not math.isnan(res["upkeep"]["on"][0]["lag_s"])  # the indexer drained the feed
    assert "| goal | measured | met |" in done.stdout
