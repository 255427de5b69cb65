"""A probe: what a round trip between processes costs by where they run, and what pinning
each granian worker to a core of its own gives the gateway and a Flask hello-world.

Run: .venv/bin/python bench/placement.py [--pings 5000] [--rounds 4] [--seconds 5]

1. *Round trips*: ``PING`` from this process to a Valkey of its own (the embedded store's
   settings), ``--pings`` of them with both processes on the same core, on different cores,
   and placed by the scheduler; Valkey's CPU a ``PING`` (``INFO cpu``) and this process's.
   A ``PING`` does nothing, so what it costs is the two processes waking each other.
2. *Served*: the gateway (``python -m gateway``'s granian settings: 2 workers, its request
   threads) and ``floor_app``'s Flask hello-world GIF under granian, each worker's every
   thread pinned to a core of its own (``taskset -a``: worker i on core i mod cores; threads
   they start later inherit it), or placed by the scheduler; the two placements in turn
   every round, the order alternating. Measured in each: the hello GIF and the pixel (req/s,
   wrk ``-t2 -c16``), and ``POST /v1/events`` with 100 fresh events a body (events/s and
   Valkey's CPU an event). Valkey is never pinned.

Needs at least two cores and ``taskset`` (util-linux). Prints the figures; writes nothing to
docs/benchmarks.md, where they are quoted ("Beacon hot path").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import redis  # noqa: E402
from load import BROWSER_HEADERS, PIXEL_QUERY, Load  # noqa: E402
from serving import THREADS, Served, consented_subject, serve, server_env, valkey_server  # noqa: E402

PLACEMENTS = ("scheduler", "pinned")


def cpu_seconds(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def round_trips(r: redis.Redis, pings: int, cores: list[int]) -> list[tuple[str, float, float]]:
    """Per placement: Valkey's and this process's CPU a ``PING`` (µs)."""
    valkey = int(r.info("server")["process_id"])
    mine = os.sched_getaffinity(0)
    out = []
    try:
        for name, server, client in (
            ("same core", {cores[0]}, {cores[0]}),
            ("other cores", {cores[0]}, {cores[1]}),
            ("scheduler", set(cores), set(cores)),
        ):
            _taskset(valkey, server)
            os.sched_setaffinity(0, client)
            r.ping()
            before, own = cpu_seconds(r), os.times()
            for _ in range(pings):
                r.ping()
            after, own_after = cpu_seconds(r), os.times()
            spent = (own_after.user - own.user) + (own_after.system - own.system)
            out.append((name, 1e6 * (after - before) / pings, 1e6 * spent / pings))
    finally:
        os.sched_setaffinity(0, mine)
        _taskset(valkey, set(cores))
    return out


def workers(served: Served) -> list[int]:
    """The worker processes of a granian server (its main process's children)."""
    found = subprocess.run(
        ["pgrep", "-P", str(served.proc.pid)], capture_output=True, text=True, check=False
    )
    return sorted(int(p) for p in found.stdout.split())


def place(served: Served, cores: list[int], pinned: bool) -> list[list[int]]:
    """Place the workers; the cores each one's threads may run on then, as read back."""
    placed = []
    for i, pid in enumerate(workers(served)):
        _taskset(pid, {cores[i % len(cores)]} if pinned else set(cores))
        tasks = Path(f"/proc/{pid}/task").iterdir()
        placed.append(sorted(set().union(*(os.sched_getaffinity(int(t.name)) for t in tasks))))
    return placed


def _taskset(pid: int, cores: set[int]) -> None:
    """Every thread of ``pid`` on ``cores`` (``sched_setaffinity`` sets one thread's)."""
    listed = ",".join(str(c) for c in sorted(cores))
    subprocess.run(["taskset", "-a", "-p", "-c", listed, str(pid)], capture_output=True, check=True)


def served(args: argparse.Namespace, cores: list[int]) -> dict[str, dict[str, list[float]]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-placement-"))
    figures: dict[str, dict[str, list[float]]] = {p: {} for p in PLACEMENTS}
    with valkey_server(tmp) as vk:
        r = redis.Redis.from_url(vk.connection_url)
        env = server_env(vk.connection_url, tmp)
        common = dict(workers=2, env=env, tmp=tmp, blocking_threads=args.threads)
        gateway = serve("granian", "gateway.wsgi:make_app", ready_path="/healthz", **common)
        hello = serve("granian", "floor_app:make_app", ready_path="/hello.gif", cwd=HERE, **common)
        try:
            _, jar = consented_subject(gateway.port)
            headers = {**BROWSER_HEADERS, "Cookie": jar}
            load = Load(2, args.connections, tmp, shutil.which("wrk"))

            def rps(app: Served, path: str) -> float:
                res = load.pixel(app.port, f"{path}?{PIXEL_QUERY}", headers, args.seconds)
                if res["errors"]:
                    raise RuntimeError(f"{path}: {res['errors']} requests failed")
                return float(res["rps"])

            def keep(placement: str, what: str, value: float) -> None:
                figures[placement].setdefault(what, []).append(value)

            def events(placement: str) -> None:
                before = cpu_seconds(r)
                res = load.events(gateway.port, "/v1/events", headers, args.seconds, 100)
                stored = max(int(res["stored"]), 1)
                keep(placement, "events_per_s", stored / res["seconds"])
                keep(placement, "valkey_us_per_event", 1e6 * (cpu_seconds(r) - before) / stored)

            measures: list[Callable[[str], None]] = [
                lambda p: keep(p, "hello", rps(hello, "/hello.gif")),
                lambda p: keep(p, "pixel", rps(gateway, "/p.gif")),
                events,
            ]
            for rnd in range(args.rounds):
                order = PLACEMENTS if rnd % 2 == 0 else PLACEMENTS[::-1]
                for placement in order:
                    on = [place(app, cores, placement == "pinned") for app in (gateway, hello)]
                    for measure in measures:
                        measure(placement)
                    got = {k: round(v[-1], 1) for k, v in figures[placement].items()}
                    print(f"  round {rnd + 1} {placement:9s} {got} workers' cores {on}", flush=True)
        finally:
            gateway.stop()
            hello.stop()
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=5, help="per measurement (wrk: whole s)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=THREADS, help="granian --blocking-threads")
    ap.add_argument("--no-served", action="store_true", help="only the round trips")
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        print("placement.py needs two cores and taskset (util-linux)", file=sys.stderr)
        return 2
    with valkey_server(Path(tempfile.mkdtemp(prefix="bench-placement-"))) as vk:
        r = redis.Redis.from_url(vk.connection_url)
        print(f"Round trips ({args.pings} PINGs each):")
        for name, valkey_us, client_us in round_trips(r, args.pings, cores):
            print(f"  {name:11s} Valkey {valkey_us:6.1f} µs, client {client_us:6.1f} µs a PING")
    if args.no_served:
        return 0
    print(f"Served ({args.rounds} rounds of {args.seconds} s a measurement):")
    figures = served(args, cores)
    print("Medians:")
    for placement in PLACEMENTS:
        med = {k: round(statistics.median(v), 1) for k, v in figures[placement].items()}
        ratio = med["pixel"] / med["hello"] if med["hello"] else float("nan")
        print(f"  {placement:9s} {med} pixel / hello {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
