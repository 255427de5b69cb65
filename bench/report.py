"""What every benchmark writes beside its figures: the machine, and its own docs section."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
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


def versions(valkey_version: str, wrk_version: str | None) -> dict[str, str]:
    """The versions of what serves and loads: the web stack, the store, the load generator."""
    out = {}
    for dist in ("flask", "werkzeug", "redis", "hiredis", "granian", "gunicorn", "msgspec"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["valkey"] = valkey_version
    out["wrk"] = wrk_version or "not installed"
    return out


def code_state(root: Path = DOCS.parent.parent) -> dict[str, Any]:
    """Which gateway code a run measures: the commit checked out, whether ``gateway/`` differs
    from it, and a digest of ``gateway/``'s files as they are. Read at the start and the end
    of a run: on a shared checkout the code can change (or be committed) meanwhile."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return out.stdout.strip()

    digest = hashlib.sha256()
    for path in sorted((root / "gateway").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", "gateway")),
        "digest": digest.hexdigest()[:12],
    }


def describe_code(start: dict[str, Any], end: dict[str, Any]) -> str:
    """The code measured, in words: the commit (as it was at the end of the run), and a
    warning if ``gateway/`` changed during the run."""
    text = f"`{end['head']}`" + (" plus uncommitted changes" if end["dirty"] else "")
    if start["digest"] != end["digest"]:
        text += " (**gateway/ changed during the run**: figures of mixed code)"
    elif start["head"] != end["head"]:
        text += " (the same code throughout the run, committed during it)"
    return text


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


def section_head(title: str, res: dict[str, Any], machine_note: str = "") -> list[str]:
    """A section's first lines from a run's result (``date``, ``command``, ``machine``): its
    title, when and how it was measured, and the machine (with ``machine_note`` after)."""
    m = res["machine"]
    return [
        f"## {title}",
        "",
        f"Measured {res['date']} with",
        "",
        "```",
        res["command"],
        "```",
        "",
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}; shared with other jobs.{machine_note}",
    ]


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
