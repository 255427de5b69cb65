"""A probe: the CPU one beacon costs the gateway's process, with no server around it.

Run: .venv/bin/python bench/pixel_cpu.py [ROOT ...] [--rounds 5] [--beacons 3000] [--profile]

Builds each checkout's gateway (``ROOT``: a folder holding ``gateway/``, default this one) on
a Valkey of its own, grants every purpose to one browser through the real consent API, then
calls the WSGI application's pixel directly, one beacon after the other (``GET /p.gif`` of a
page view, the browser's cookies, a Chrome user agent), and reads this process's CPU time
(``time.process_time``: waiting on the store is not counted, the client's work is). Prints
the best and every round's CPU per beacon. Several roots are measured one after the other in
separate processes, in turn, as many times as ``--tries`` says: the way to compare a change
with its base on this shared machine, whose speed moves from minute to minute (compare the
best of each, not one round). ``--profile`` prints cProfile's heaviest functions (it inflates
small calls: read it for where, not how much).

Writes nothing to docs/benchmarks.md: the figures it gave are quoted where they are used.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def measure(root: Path, rounds: int, beacons: int, profile: bool) -> dict[str, object]:
    """In this process: the gateway of ``root``, measured."""
    from serving import gateway_in_process, pixel_environ

    with gateway_in_process(Path(tempfile.mkdtemp()), root) as (app, cookie):
        environ = pixel_environ(cookie)
        wsgi = app.wsgi_app
        statuses: list[str] = []

        def beacon() -> None:
            wsgi(dict(environ), lambda status, headers: statuses.append(status))

        beacon()
        if not statuses[0].startswith("200"):
            raise RuntimeError(f"the pixel answered {statuses[0]}")
        for _ in range(beacons // 3):  # warm: caches, the line's connection
            beacon()
        per: list[float] = []
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(beacons):
                beacon()
            per.append(1e6 * (time.process_time() - started) / beacons)
        if any(not s.startswith("200") for s in statuses):
            raise RuntimeError("a beacon was not answered 200")
        top = ""
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            for _ in range(beacons):
                beacon()
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
            top = out.getvalue()
        source = sys.modules["gateway"].__file__
    return {
        "root": str(root),
        "gateway": source,
        "best_us": round(min(per), 1),
        "rounds_us": [round(p) for p in per],
        "profile": top,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="*", type=Path, default=[ROOT])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--beacons", type=int, default=3000)
    ap.add_argument("--tries", type=int, default=2, help="turns over the roots (default 2)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child's run
    args = ap.parse_args()
    if args.one:
        res = measure(args.roots[0].resolve(), args.rounds, args.beacons, args.profile)
        print(json.dumps(res))
        return 0
    for _ in range(args.tries):
        for root in args.roots:
            cmd = [
                sys.executable,
                __file__,
                str(root),
                "--one",
                "--rounds",
                str(args.rounds),
                "--beacons",
                str(args.beacons),
                *(["--profile"] if args.profile else []),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            res = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"{res['root']}: best {res['best_us']} us of CPU a beacon, "
                f"rounds {res['rounds_us']} (gateway from {res['gateway']})",
                flush=True,
            )
            if res["profile"]:
                print(res["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
