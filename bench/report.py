"""What every benchmark writes beside its figures: the machine, and its own docs section."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
PREAMBLE = (
    "# Benchmarks\n\nFigures from the scripts in `bench/`. Each script rewrites its own "
    "section; the machine is shared and noisy, so compare figures within one run, not across "
    "runs.\n"
)


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def shown_python() -> str:
    """The interpreter as a reader would type it: relative when it is the project's .venv."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(DOCS.parent.parent))
    except ValueError:
        return str(exe)


def run_header() -> str:
    """When, how and where: the lines every section starts with."""
    m = machine_info()
    cmd = shlex.join([shown_python(), *sys.argv])
    return (
        f"Measured {datetime.now(UTC).isoformat(timespec='seconds')} with\n\n```\n{cmd}\n```\n\n"
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}; shared with other jobs."
    )


def write_section(name: str, markdown: str, path: Path = DOCS) -> None:
    """Replace the section between ``name``'s markers in ``path`` (append it if absent)."""
    begin = f"<!-- {name}: begin (generated, edit the script instead) -->"
    end = f"<!-- {name}: end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if not text.strip():
        text = PREAMBLE
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
