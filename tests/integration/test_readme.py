"""The README's "Try it" block, pasted into bash in a fresh copy of the repository.

The block is read from README.md itself, so the two cannot drift apart; the only change made
to it is the port (``localhost:8000`` -> a free one, and ``./scripts/run --port`` to match),
so that the test does not collide with a gateway someone runs. The copy holds what a fresh
clone holds plus the work not yet committed (tracked and untracked files, not ignored ones):
no ``.venv``, so ``./scripts/run`` installs first, as on a new machine. Every process the
block starts runs in one session, which must be empty once the block has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .test_run import ROOT, free_port, gateway_env

README = ROOT / "README.md"


def fenced(section: str) -> str:
    """The first ``sh`` block under the README heading ``section``."""
    text = README.read_text("utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", body, re.S)
    assert found, f"no sh block under '## {section}'"
    return found.group(1)


def fresh_copy(dest: Path) -> Path:
    """The repository's files as a clone would have them, with the uncommitted work."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the work tree is not there
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    assert not (dest / ".venv").exists()
    return dest


def session_pids(sid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


def person_env() -> dict[str, str]:
    """A shell outside any virtualenv: the test's own .venv is not on the PATH."""
    env = gateway_env()
    env.pop("VIRTUAL_ENV", None)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if "/.venv/" not in p + "/"]
    env["PATH"] = os.pathsep.join(path or ["/usr/local/bin", "/usr/bin", "/bin"])
    return env


@pytest.mark.slow
def test_the_try_it_block_works_pasted_into_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_copy(tmp_path / "clone")
    port = free_port()
    block = fenced("Try it")
    assert block.startswith("./scripts/run &"), block
    assert block.count("localhost:8000") >= 5 and "127.0.0.1" not in block
    block = block.replace("./scripts/run &", f"./scripts/run --port {port} &", 1)
    block = block.replace("localhost:8000", f"localhost:{port}")

    proc = subprocess.Popen(
        ["bash", "-c", block],
        cwd=clone,
        env=person_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the block's processes: one session, found and ended below
    )
    try:
        out_b, err_b = proc.communicate(timeout=600)
        out, err = out_b.decode(), err_b.decode()
        deadline = time.monotonic() + 30
        while session_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = session_pids(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    shown = f"--- stdout\n{out}\n--- stderr\n{err}"
    assert proc.returncode == 0, shown
    assert not left, f"processes left running: {left}\n{shown}"

    # the policy, pretty-printed with its Chinese as Chinese
    assert '"version": "2026-11-01"' in out, shown
    assert "必要功能" in out and "\\u" not in out, shown
    # the consent's receipt, for personalisation only
    assert '"action": "consent"' in out and '"personalization": true' in out, shown
    # the event: stored
    answer = json.loads(next(line for line in out.splitlines() if line.startswith('{"accepted"')))
    assert answer["stored"] == 1, shown
    # everything held: the event's keyword, in Chinese
    assert '"keyword": "轴承"' in out and '"ledger_intact": true' in out, shown
    # the withdrawal, and nothing went wrong on the way
    assert out.rstrip().endswith("200"), shown
    for trouble in ("Expecting value", "Traceback", "curl: (", "Editable install"):
        assert trouble not in out + err, f"{trouble!r} in the output\n{shown}"
    # the gateway's start warns about nothing (pip may, about the machine's own settings)
    logged = [line for line in err.splitlines() if re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert any("INFO granian: Listening at" in line for line in logged), shown
    assert not [line for line in logged if " INFO " not in line], shown
    assert (clone / "instance" / "gateway.lock").read_text() == ""

    # a second run installs nothing: it serves (here: answers --help) within seconds
    began = time.monotonic()
    again = subprocess.run(
        ["./scripts/run", "--help"], cwd=clone, env=person_env(), capture_output=True, text=True
    )
    assert again.returncode == 0 and again.stdout.startswith("usage: gateway"), again.stderr
    assert "installing" not in again.stderr and time.monotonic() - began < 15

    # the README's API-key commands work as written after ./scripts/run (no gateway running:
    # they start the folder's store for the moment)
    for line in fenced("Advertising refusals, unsubscribes and saved logins").splitlines():
        command = line.split("#")[0].strip()
        made = subprocess.run(
            ["bash", "-c", command], cwd=clone, env=person_env(), capture_output=True, text=True
        )
        assert made.returncode == 0 and made.stdout.startswith("gwk_"), (command, made.stderr)
