"""An APP in a process of its own: killed mid-run with the spool on, or simply exiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import stream_events

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("app_process.py")


def _start(url: str, spool: Path, mode: str, count: int = 0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), url, str(spool), mode, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


@pytest.mark.slow
def test_killed_app_with_a_spool_sends_every_event_once_after_restart(url, relay, r, tmp_path):
    spool = tmp_path / "app.db"
    relay.drop_replies = 2  # some batches are stored but their answers lost: in-flight retries
    app = _start(f"http://127.0.0.1:{relay.port}", spool, "run", 5000)
    accepted: list[int] = []
    assert app.stdout is not None
    try:
        for line in app.stdout:
            accepted.append(int(line))
            if len(accepted) == 300:
                relay.close()  # the network goes away: the spool fills
            if len(accepted) == 700:
                break
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=10)
    assert len(accepted) == 700
    import sqlite3

    with sqlite3.connect(spool) as db:
        waiting = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert waiting >= 300  # what was tracked while the gateway was unreachable

    again = _start(url, spool, "resume")
    out, _ = again.communicate(timeout=60)
    assert out.strip() == "flushed"

    counts = Counter(p["screen"] for _, _, p in stream_events(r, "personalization"))
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    stored = {int(k[1:]) for k in counts}
    # Every accepted event is stored, and nothing else but the events the APP tracked after
    # those (it runs ahead of this reader until the kill lands): no gap, no stranger.
    assert set(accepted) <= stored == set(range(max(stored) + 1))
    assert relay.dropped == 2


def test_an_app_that_just_exits_has_its_events_sent_by_the_flush_at_exit(url, r, tmp_path):
    app = _start(url, tmp_path / "exit.db", "exit", 1200)
    out, _ = app.communicate(timeout=60)
    assert app.returncode == 0 and out.strip() == "tracked"
    counts = Counter(p["screen"] for _, _, p in stream_events(r, "personalization"))
    assert counts == Counter({f"x{i}": 1 for i in range(1200)})
