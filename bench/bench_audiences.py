"""Audience counts (issue 12): query latency over HTTP, index memory, bitmaps against plain
Python sets, and what keeping the index costs ``/v1/batch``, on an index of N people.

    .venv/bin/python bench/bench_audiences.py [--people 10000000] [--queries 300]
        [--breakdowns 100] [--rounds 3] [--seconds 10] [--no-docs]

1. An embedded-style Valkey (``serving.valkey_server``); the index of ``--people`` people
   written straight into it as the indexer saves it (``audience_data.py``: 64 shards,
   realistic shares for consent, activity windows, 200 categories, 20 industries, 5 company
   sizes, 34 provinces, ~300 cities): the HTTP path cannot make 10 M people here.
2. A reader in a fresh process (``audience_reader.py``): ``IndexView.refresh()`` loading
   every shard, its ``memory_bytes()`` and the process's ``VmRSS`` growth; then each query's
   set algebra in process, ``IndexView.matching`` (and a breakdown's cells) against the same
   work on plain Python sets of the same people (the first ``--compare`` of each kind); and
   the difference check's work with the reader's cache warm and cold (as after any move of
   the index).
3. The gateway under granian (``gateway.wsgi:make_app``, indexer on, every 1 s; monthly
   budget 1,000,000 so that no query meets 429), an API key of scope ``audiences`` and
   ``--subjects`` APP subjects, each posting a first batch (the indexer's first round, which
   loads every shard, over before timing). Then, sequentially from one httpx client,
   ``--queries`` distinct estimates (3-5 dimensions, 1-3 values each, popular values more
   often, an activity window half the time) and ``--breakdowns`` distinct breakdowns by
   province (1-3 dimensions), after a warm-up that fills the key's 20 recent queries: each a
   fresh question (noise, budget, difference checks against the recent queries, the audit
   write). Refusals ``too_close_to_earlier_query`` are counted, and timed like the rest.
4. Upkeep: per round the gateway started twice, ``AUDIENCE_INDEXER`` on and off (order
   alternating), each time a warm-up, for ``on`` the feed drained (the earlier rounds'
   events indexed), then ``/v1/batch`` with 500-event batches over the subjects (wrk, else
   ``load.py``'s Python load) for ``--seconds``; events/s and the gateway's CPU per event,
   and for ``on`` how long the feed took to drain once the load stopped (the index's lag).
   Between gateways the bench deletes the indexer's lease (it is not released on stop).
   The gateway's side of all this is in ``audience_serving.py``.

Results go to the console and to this script's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

import httpx  # noqa: E402
import redis  # noqa: E402
from audience_data import Population, build_index, open_store, queries  # noqa: E402
from audience_reader import measure_reader  # noqa: E402
from audience_serving import (  # noqa: E402
    MB,
    drain,
    first_batches,
    group_rss_mb,
    quiet_store,
    say,
    serve_gateway,
    upkeep,
)
from load import wrk_version  # noqa: E402
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
    HOST,
    HUGE,
    THREADS,
    app_subject,
    server_env,
    valkey_server,
)

from gateway.core.apikeys import ApiKeys  # noqa: E402
from gateway.storage.keys import Keys  # noqa: E402

GOALS = {"estimate_ms": 20.0, "breakdown_ms": 50.0, "memory_mb": 200.0, "upkeep_ratio": 0.8}
GOAL_PEOPLE = 10_000_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--people", type=int, default=GOAL_PEOPLE, help="people in the index")
    p.add_argument("--queries", type=int, default=300, help="timed estimates over HTTP")
    p.add_argument("--breakdowns", type=int, default=100, help="timed breakdowns by province")
    p.add_argument("--warmup-queries", type=int, default=25, help="untimed estimates first")
    p.add_argument("--compare", type=int, default=50, help="queries of each kind done on sets")
    p.add_argument("--rounds", type=int, default=3, help="upkeep: on/off rounds (medians)")
    p.add_argument("--seconds", type=float, default=10, help="upkeep: length of a measurement")
    p.add_argument("--warmup", type=float, default=2, help="upkeep: warm-up seconds")
    p.add_argument("--subjects", type=int, default=16, help="APP subjects the batches rotate")
    p.add_argument("--batch", type=int, default=500, help="events per /v1/batch body")
    p.add_argument("--workers", type=int, default=2, help="granian worker processes")
    p.add_argument("--blocking-threads", type=int, default=THREADS)
    p.add_argument("--threads", type=int, default=2, help="load generator threads")
    p.add_argument("--connections", type=int, default=8, help="load generator connections")
    p.add_argument("--seed", type=int, default=12, help="the synthetic data's and queries'")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    return p.parse_args(argv)


def pct(xs: list[float], q: float) -> float:
    """The ``q``-th percentile (linear between the closest ranks); NaN when empty."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    i = (len(s) - 1) * q / 100
    lo = int(i)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (i - lo)


def dist_ms(seconds: list[float]) -> dict[str, float]:
    ms = [1000 * s for s in seconds]
    return {"n": len(ms), "p50": pct(ms, 50), "p95": pct(ms, 95), "max": max(ms, default=0)}


# ---------------------------------------------------------------------- HTTP
def ask(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[float, str]:
    """One query, timed from send to the whole answer read; its outcome."""
    t0 = time.perf_counter()
    resp = client.post(path, json=body)
    data = resp.json()
    took = time.perf_counter() - t0
    if resp.status_code == 200:
        released = data.get("epsilon_spent", 0) > 0
        return took, "released" if released else "below_threshold"
    code = data.get("error", {}).get("code", "?")
    return took, code if code == "too_close_to_earlier_query" else f"{resp.status_code} {code}"


def query_phase(
    port: int,
    key: str,
    warm: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    estimates: list[dict[str, Any]],
    breakdowns: list[dict[str, Any]],
) -> dict[str, Any]:
    base = f"http://{HOST}:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    for i, f in enumerate(warm[0]):  # the first ones on connections of their own: each
        with httpx.Client(base_url=base, headers=headers, timeout=120) as c:  # worker loads
            ask(c, "/v1/audiences/estimate", {"filters": f})
        if i == 8:
            break
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
        for f in warm[0][9:]:
            ask(c, "/v1/audiences/estimate", {"filters": f})
        for f in warm[1]:
            ask(c, "/v1/audiences/breakdown", {"by": "province", "filters": f})
        for kind, bodies in (
            ("estimate", [{"filters": f} for f in estimates]),
            ("breakdown", [{"by": "province", "filters": f} for f in breakdowns]),
        ):
            timed = [ask(c, f"/v1/audiences/{kind}", b) for b in bodies]
            outcomes: dict[str, int] = {}
            for _, o in timed:
                outcomes[o] = outcomes.get(o, 0) + 1
            out[kind] = {
                "all": dist_ms([t for t, _ in timed]),
                "released": dist_ms([t for t, o in timed if o == "released"]),
                "outcomes": outcomes,
            }
            d = out[kind]["all"]
            say(
                f"  {kind}: p50 {d['p50']:.1f} ms, p95 {d['p95']:.1f} ms, max {d['max']:.1f} "
                f"ms over {d['n']} ({outcomes})"
            )
    return out


# ---------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> dict[str, Any]:
    code_start = code_state()
    tmp = Path(tempfile.mkdtemp(prefix="bench-audiences-"))
    out: dict[str, Any] = {}
    try:
        with valkey_server(tmp) as vk:
            url = vk.connection_url
            store, cat = open_store(url)
            assert cat.audiences is not None
            activity = cat.audiences.activity
            pop = Population.of(cat)
            say(f"building the index of {args.people:,} people ({store.audiences.shards} shards)")
            t0 = time.perf_counter()
            out["index"] = build_index(store.audiences, pop, args.people, args.seed, say)
            out["index"]["build_s"] = time.perf_counter() - t0
            quiet_store(store.r)
            info = store.r.info()
            out["index"]["valkey_used_bytes"] = int(info["used_memory"])
            warm_n, warm_b = args.warmup_queries, 5
            ests, brks = queries(pop, warm_n + args.queries, warm_b + args.breakdowns, args.seed)
            warm, ests, brks = (ests[:warm_n], brks[:warm_b]), ests[warm_n:], brks[warm_b:]
            say(f"  built in {out['index']['build_s']:.0f} s; the reader, in a fresh process")
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                reader = pool.submit(measure_reader, url, ests, brks, args.compare).result()
            out["reader"] = reader
            say(
                f"  loaded in {reader['load_s']:.2f} s: memory_bytes "
                f"{reader['memory_bytes'] / MB:.1f} MB, VmRSS "
                f"+{reader['rss_growth_bytes'] / MB:.1f} MB; sets for "
                f"{len(reader['set_estimate_s'])} estimates + "
                f"{len(reader['set_breakdown_s'])} breakdowns: "
                f"+{reader['sets_growth_bytes'] / MB:.0f} MB, same counts {reader['same_counts']}"
            )
            cold = dist_ms(reader["difference_cold_s"])
            say(
                f"  difference check with the cache cold: p50 {cold['p50']:.1f}, "
                f"p95 {cold['p95']:.1f} ms"
            )
            key = ApiKeys(store.apikeys).create("bench-audiences", ["audiences"])
            store.close()
            env_extra = {
                "AUDIENCE_MONTHLY_BUDGET": "1000000",
                "AUDIENCE_INDEX_EVERY_S": "1",
                "RATE_NEW_SUBJECTS_BURST": HUGE,
                "RATE_NEW_SUBJECTS_PER_HOUR": HUGE,
                "RATE_ADDRESS_LEDGER_BURST": HUGE,
                "RATE_ADDRESS_LEDGER_PER_HOUR": HUGE,
            }
            env = server_env(url, tmp, extra={**env_extra, "AUDIENCE_INDEXER": "on"})
            gw = serve_gateway(args, env, tmp, "gateway-queries")
            r = redis.Redis.from_url(url, decode_responses=True)
            try:
                subjects = [app_subject(gw.port) for _ in range(args.subjects)]
                first_batches(gw.port, subjects, args.batch)
                out["first_round_s"] = drain(r, Keys(), activity)
                say(f"serving; the indexer's first round took {out['first_round_s']:.1f} s")
                out["http"] = query_phase(gw.port, key, warm, ests, brks)
                out["gateway_rss_mb"] = group_rss_mb(gw.proc.pid)
            finally:
                gw.stop()
                r.delete(Keys.AUDIENCE_LEASE)
            say("upkeep: /v1/batch with the indexer on and off")
            out["upkeep"] = upkeep(args, url, tmp, env_extra, subjects, activity)
            valkey = str(info.get("valkey_version") or info.get("redis_version"))
            r.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wrk = shutil.which("wrk")
    vers = versions(valkey, wrk_version(wrk) if wrk else None)
    for dist in ("pyroaring", "opendp", "httpx"):
        vers[dist] = metadata.version(dist)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([shown_python(), "bench/bench_audiences.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "versions": vers,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "code": {"start": code_start, "end": code_state()},
        **out,
        "summary": summarise(out),
    }


def summarise(out: dict[str, Any]) -> dict[str, Any]:
    rd, up = out["reader"], out["upkeep"]
    ratios = [
        a["events_per_s"] / b["events_per_s"] for a, b in zip(up["on"], up["off"], strict=True)
    ]
    s = {
        "estimate": out["http"]["estimate"]["all"],
        "breakdown": out["http"]["breakdown"]["all"],
        "memory_mb": rd["memory_bytes"] / MB,
        "rss_growth_mb": rd["rss_growth_bytes"] / MB,
        "upkeep_ratio": statistics.median(ratios),
        "upkeep_ratios": [round(x, 3) for x in ratios],
        "bitmap_estimate": dist_ms(rd["bitmap_estimate_s"][: len(rd["set_estimate_s"])]),
        "set_estimate": dist_ms(rd["set_estimate_s"]),
        "bitmap_breakdown": dist_ms(rd["bitmap_breakdown_s"][: len(rd["set_breakdown_s"])]),
        "set_breakdown": dist_ms(rd["set_breakdown_s"]),
        "difference_warm": dist_ms(rd["difference_warm_s"]),
        "difference_cold": dist_ms(rd["difference_cold_s"]),
    }
    s["met"] = {
        "estimate": s["estimate"]["p95"] <= GOALS["estimate_ms"],
        "breakdown": s["breakdown"]["p95"] <= GOALS["breakdown_ms"],
        "memory": max(s["memory_mb"], s["rss_growth_mb"]) <= GOALS["memory_mb"],
        "upkeep": s["upkeep_ratio"] >= GOALS["upkeep_ratio"],
    }
    return s


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def markdown(res: dict[str, Any]) -> str:
    a, v, s, rd = res["args"], res["versions"], res["summary"], res["reader"]
    http, up, idx = res["http"], res["upkeep"], res["index"]
    load_tool = f"wrk {v['wrk']}" if v["wrk"] != "not installed" else "load.py's Python load"
    scale = "" if a["people"] == GOAL_PEOPLE else f" (measured at {a['people']:,} people)"
    out = [
        *section_head("Audience counts (bench/bench_audiences.py)", res),
        f"- Index: {a['people']:,} synthetic people written straight into the store as the "
        f"indexer saves them (`bench/audience_data.py`: 64 shards, up to "
        f"{idx['bitmaps_per_shard_max']} bitmaps a shard, {idx['serialized_bytes'] / MB:.0f} MB "
        f"serialized, Valkey `used_memory` {idx['valkey_used_bytes'] / MB:.0f} MB; made in "
        f"{idx['build_s']:.0f} s): consent 70 %, active 15/40/70 % within 7/30/90 days, 1-4 of "
        "200 categories, 20 industries and 5 company sizes (the 60 % with account traits), 34 "
        "provinces (广东省 15 %, 浙江省 and 江苏省 12 %) and ~300 cities.",
        f"- Gateway: the working tree ({describe_code(res['code']['start'], res['code']['end'])}"
        f") under granian {v['granian']}, {a['workers']} workers, {a['blocking_threads']} "
        f"blocking threads, on Valkey {v['valkey']} (appendonly, fsync every second), indexer "
        f"on (every 1 s); pyroaring {v['pyroaring']}, OpenDP {v['opendp']}. Queries: httpx "
        f"{v['httpx']}, one client, one at a time, each a distinct question (noise, budget "
        "spend, difference checks against the key's 20 recent queries, audit write), after "
        f"{a['warmup_queries']} untimed estimates and 5 breakdowns.",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
    ]
    for kind, goal in (("estimate", "estimate_ms"), ("breakdown", "breakdown_ms")):
        d, rel, oc = s[kind], http[kind]["released"], http[kind]["outcomes"]
        what = "3-5 dimensions" if kind == "estimate" else "by province, 1-3 dimensions"
        out.append(
            f"| `POST /v1/audiences/{kind}` ({what}) p95 <= {GOALS[goal]:g} ms over HTTP "
            f"| p95 **{d['p95']:.1f} ms** (p50 {d['p50']:.1f}, max {d['max']:.1f}) over "
            f"{d['n']}; answered with noise {oc.get('released', 0)} (p95 {rel['p95']:.1f} ms), "
            f"below the floor {oc.get('below_threshold', 0)}, refused too close to an earlier "
            f"query {oc.get('too_close_to_earlier_query', 0)}"
            + "".join(f", {k} {n}" for k, n in oc.items() if k[0].isdigit())
            + f" | {yes(s['met'][kind])} |"
        )
    out += [
        f"| index memory <= {GOALS['memory_mb']:g} MB for 10 M people{scale} | "
        f"`IndexView.memory_bytes()` **{s['memory_mb']:.0f} MB**, the reader's VmRSS "
        f"+{s['rss_growth_mb']:.0f} MB loading every shard ({rd['load_s']:.1f} s, "
        f"{rd['bitmaps']} merged bitmaps); gateway processes' RSS after the queries "
        f"{', '.join(f'{x:.0f}' for x in res['gateway_rss_mb'])} MB | {yes(s['met']['memory'])} |",
        f"| the indexer costs `/v1/batch` at most 20 % (on / off >= {GOALS['upkeep_ratio']}) | "
        f"**{s['upkeep_ratio']:.2f}** (median of rounds {s['upkeep_ratios']}) | "
        f"{yes(s['met']['upkeep'])} |",
        "",
        f"Bitmaps against plain Python sets, in one process, the same {s['set_estimate']['n']} "
        f"estimates and {s['set_breakdown']['n']} breakdowns (set algebra only; the sets made "
        f"beforehand from the bitmaps: {rd['sets_count']} sets, {rd['sets_members']:,} members, "
        f"VmRSS +{rd['sets_growth_bytes'] / MB:,.0f} MB, {rd['sets_made_s']:.0f} s; counts equal: "
        f"{yes(rd['same_counts'])}):",
        "",
        "| per query | bitmaps p50 ms | p95 ms | sets p50 ms | p95 ms | sets / bitmaps (p50) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("estimate", "breakdown"):
        b, t = s[f"bitmap_{kind}"], s[f"set_{kind}"]
        out.append(
            f"| {kind} (`IndexView.matching`{', cells' if kind == 'breakdown' else ''}) "
            f"| {b['p50']:.2f} | {b['p95']:.2f} | {t['p50']:.1f} | {t['p95']:.1f} "
            f"| {t['p50'] / max(b['p50'], 1e-9):,.0f}x |"
        )
    warm, cold = s["difference_warm"], s["difference_cold"]
    out += [
        "",
        f"- The difference check per estimate (`first_too_close`: its people against each of "
        f"the 20 estimates before it, in process, over {cold['n']} estimates): p50 "
        f"{warm['p50']:.2f} ms, p95 {warm['p95']:.2f} ms with the reader's cache as the "
        "queries left it (a reader keeps an earlier query's people 5 minutes, while the "
        "index moves); p50 "
        f"{cold['p50']:.1f} ms, p95 {cold['p95']:.1f} ms in a process that had not computed "
        "them (another worker, or after the index moved: each earlier query told apart by "
        "counts alone, or matched again).",
    ]
    on, off = up["on"], up["off"]

    def med(rows: list[dict[str, Any]], f: Any) -> float:
        return statistics.median(f(x) for x in rows)

    out += [
        "",
        f"Upkeep: {a['rounds']} round(s), the gateway restarted for each measurement with "
        f"`AUDIENCE_INDEXER` on or off (order alternating), {load_tool}, {a['threads']} "
        f"threads, {a['connections']} connections, {a['batch']} fresh events a body over "
        f"{a['subjects']} APP subjects, {a['warmup']:g} s warm-up, then (on) the feed drained, "
        f"{a['seconds']:g} s measured:",
        "",
        "| indexer | events/s | app CPU µs/event | Valkey CPU µs/event | feed drained after |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rows in (("on", on), ("off", off)):
        lag = f"{med(rows, lambda x: x['lag_s']):.2f} s" if name == "on" else "-"
        out.append(
            f"| {name} | {med(rows, lambda x: x['events_per_s']):,.0f} "
            f"| {med(rows, lambda x: 1000 * x['cpu']['app_ms']):.0f} "
            f"| {med(rows, lambda x: 1000 * x['cpu']['valkey_ms']):.0f} | {lag} |"
        )
    out += [
        "",
        "- The batches' events carry no category, and GeoIP places 127.0.0.1 nowhere: the "
        "indexer's work per entry is the activity, numbering and consent of its person.",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    text = markdown(res)
    print(text)
    if res["code"]["start"]["digest"] != res["code"]["end"]["digest"]:
        say("warning: gateway/ changed during the run")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str) + "\n")
    if not args.no_docs:
        write_section("bench_audiences.py", text)
        say("updated docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
