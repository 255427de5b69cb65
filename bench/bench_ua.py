"""Benchmark UserAgentParser: first-seen (cache miss) and repeated (cache hit) UAs.

Run: .venv/bin/python bench/bench_ua.py [--rounds 5] [--misses 20000] [--hits 200000] [--no-docs]

The corpus is the test suite's UA table. A miss round parses every corpus string with a
suffix unique to that round and call, so nothing can come from the cache; the cache is the
default size, so long rounds also pay for eviction, as production does. Several rounds are
run and the median round is judged, so one noisy neighbour does not decide the outcome.
Exits 1 when the median misses the targets (mean miss < 50 us, mean hit < 5 us). Rewrites
its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from report import run_header, write_section  # noqa: E402

from gateway.core.useragent import UserAgentParser  # noqa: E402
from tests.gateway.test_useragent import CASES  # noqa: E402

MISS_TARGET_US = 50.0
HIT_TARGET_US = 5.0


def miss_round(
    parser: UserAgentParser, corpus: list[str], n: int, tag: str
) -> tuple[list[float], float]:
    """Per-call wall latencies (us) for ``n`` never-seen strings, and mean CPU us per call.

    CPU time (this thread only) is reported alongside because wall time on a shared 2-core
    box includes whatever else is running; the targets are judged on wall time.
    """
    inputs = [f"{corpus[i % len(corpus)]} bench/{tag}.{i}" for i in range(n)]
    clock = time.perf_counter_ns
    out = []
    cpu0 = time.thread_time_ns()
    for ua in inputs:
        t0 = clock()
        parser.parse(ua)
        out.append((clock() - t0) / 1000)
    return out, (time.thread_time_ns() - cpu0) / n / 1000


def hit_round(parser: UserAgentParser, corpus: list[str], n: int) -> float:
    """Mean us per call over ``n`` calls on already-cached strings (timed in bulk)."""
    for ua in corpus:
        parser.parse(ua)
    inputs = [corpus[i % len(corpus)] for i in range(n)]
    parse = parser.parse
    t0 = time.perf_counter()
    for ua in inputs:
        parse(ua)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--misses", type=int, default=20_000, help="first-seen UAs per round")
    ap.add_argument("--hits", type=int, default=200_000, help="repeated UAs per round")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args()

    corpus = [c.ua for c in CASES]
    t0 = time.perf_counter()
    parser = UserAgentParser()
    init_s = time.perf_counter() - t0
    miss_round(parser, corpus, len(corpus) * 20, "warmup")  # warm the regex engines' DFAs

    miss_means: list[float] = []
    miss_cpu: list[float] = []
    p99s: list[float] = []
    hit_means: list[float] = []
    for r in range(args.rounds):
        lat, cpu = miss_round(parser, corpus, args.misses, str(r))
        miss_means.append(statistics.fmean(lat))
        miss_cpu.append(cpu)
        p99s.append(statistics.quantiles(lat, n=100)[98])
        hit_means.append(hit_round(parser, corpus, args.hits))

    miss_us, hit_us = statistics.median(miss_means), statistics.median(hit_means)
    ok = miss_us < MISS_TARGET_US and hit_us < HIT_TARGET_US
    result = {
        "python": platform.python_version(),
        "corpus_size": len(corpus),
        "rounds": args.rounds,
        "init_s": round(init_s, 3),
        "miss_mean_us": round(miss_us, 2),
        "miss_p99_us": round(statistics.median(p99s), 2),
        "miss_round_means_us": [round(x, 2) for x in miss_means],
        "miss_cpu_mean_us": round(statistics.median(miss_cpu), 2),
        "hit_mean_us": round(hit_us, 3),
        "hit_round_means_us": [round(x, 3) for x in hit_means],
        "targets_us": {"miss": MISS_TARGET_US, "hit": HIT_TARGET_US},
        "ok": ok,
    }

    print(f"{'case':<22}{'mean us':>10}{'target us':>11}{'p99 us':>9}  rounds (mean us)")
    print(
        f"{'first-seen (miss)':<22}{miss_us:>10.2f}{MISS_TARGET_US:>11.1f}"
        f"{result['miss_p99_us']:>9.1f}  {result['miss_round_means_us']}"
    )
    print(
        f"{'repeated (hit)':<22}{hit_us:>10.3f}{HIT_TARGET_US:>11.1f}{'':>9}  "
        f"{result['hit_round_means_us']}"
    )
    print(
        f"first-seen CPU time {result['miss_cpu_mean_us']:.2f} us/UA (this thread only); "
        f"parser init {init_s:.2f} s; {'OK' if ok else 'TARGET MISSED'}"
    )
    print(json.dumps(result))
    if not args.no_docs:
        write_section("bench_ua.py", markdown(result, args))
    return 0 if ok else 1


def markdown(res: dict[str, object], args: argparse.Namespace) -> str:
    met = "**yes**" if res["ok"] else "**no**"
    return "\n".join(
        [
            "## User-agent parsing (bench/bench_ua.py)",
            "",
            run_header(),
            "- Parser: `gateway.core.useragent.UserAgentParser` (ua-parser 1.x with the "
            "ua-parser-rs regex engine, the platform supplements, an LRU cache of the default "
            "size); corpus: "
            f"the {res['corpus_size']} user agents of `tests/gateway/test_useragent.py`; "
            f"{args.rounds} rounds of {args.misses:,} first-seen and {args.hits:,} repeated "
            f"strings, medians of the round means; parser start-up {res['init_s']} s.",
            "",
            "| case | mean µs | p99 µs | target µs | per round (mean µs) |",
            "|---|---:|---:|---:|---|",
            f"| first seen (cache miss, every string unique) | {res['miss_mean_us']} | "
            f"{res['miss_p99_us']} | < {MISS_TARGET_US:.0f} | {res['miss_round_means_us']} |",
            f"| repeated (cache hit) | {res['hit_mean_us']} | | < {HIT_TARGET_US:.0f} | "
            f"{res['hit_round_means_us']} |",
            "",
            f"First-seen CPU time (this thread only): {res['miss_cpu_mean_us']} µs. "
            f"Targets met: {met}.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
