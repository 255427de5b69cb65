"""``bench/placement.py`` runs, in a small form: it reads a ``PING``'s cost in each placement,
and serves the gateway and the hello-world with each worker pinned to a core of its own, then
placed by the scheduler again (read back from every thread's affinity), every pixel 200."""

from __future__ import annotations

import ast
import os
import re

from .probes import run_bench


def test_the_placement_probe_pins_each_worker_and_reads_every_figure() -> None:
    cores = sorted(os.sched_getaffinity(0))
    assert len(cores) >= 2, "the probe needs two cores: this machine has them"
    out = run_bench(
        "placement.py", "--pings", "100", "--rounds", "1", "--seconds", "1", timeout=180
    )
    for name in ("same core", "other cores", "scheduler"):
        assert re.search(rf"{name} +Valkey +[0-9.]+ µs, client +[0-9.]+ µs a PING", out)
    placed = dict(re.findall(r"round 1 (scheduler|pinned) +\{.*\} workers' cores (.+)", out))
    assert set(placed) == {"scheduler", "pinned"}, out
    for app in ast.literal_eval(placed["pinned"]):  # gateway, hello: two workers each
        assert app == [[cores[0]], [cores[1]]], out
    for app in ast.literal_eval(placed["scheduler"]):
        assert app == [cores, cores], out
    medians = re.findall(
        r"(scheduler|pinned) +\{'hello': ([0-9.]+), 'pixel': ([0-9.]+), "
        r"'events_per_s': ([0-9.]+), 'valkey_us_per_event': ([0-9.]+)\}",
        out,
    )
    assert len(medians) == 4, out  # the round's two lines and the two medians
    assert all(float(x) > 0 for m in medians for x in m[1:]), out
