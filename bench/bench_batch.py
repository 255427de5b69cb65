"""APP ingestion: POST /v1/batch with 500-event batches, and one sdk_py client end to end.

    .venv/bin/python bench/bench_batch.py [--seconds 10] [--rounds 2]

Serves the gateway under granian (as ``python -m gateway`` does) on an embedded Valkey with
the append-only file on, creates an APP subject with every purpose granted, then measures,
interleaved over the rounds:

* ``/v1/batch``: wrk posting batches of 500 fresh events (a device context each), the
  events the answers say were stored, checked against the streams;
* ``/v1/events`` with 100 events a body, in the same run, for comparison;
* one ``TelemetryClient`` in this process (memory buffer, 500-event gzipped batches):
  ``track`` calls a second, and events a second from the first ``track`` to the last
  acknowledgement.

Results go to the console and to this script's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from load import BATCH_HEAD, DEVICE_CONTEXT, Load, wrk_version
from meters import PERSONALIZATION_STREAMS, SECURITY_STREAMS, CpuMeter, settle
from report import machine_info, section_head, shown_python, versions, write_section
from serving import (
    HOST,
    THREADS,
    Served,
    app_subject,
    serve,
    server_env,
    valkey_server,
)

from gateway.storage import entry_events
from sdk_py import Backoff, DeviceInfo, TelemetryClient

TARGET_BATCH_EVENTS_PER_S = 50_000
CONTEXT = DEVICE_CONTEXT


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10, help="length of each measurement")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions (medians)")
    p.add_argument("--workers", type=int, default=2, help="granian worker processes")
    p.add_argument("--connections", type=int, default=8, help="concurrent connections")
    p.add_argument("--threads", type=int, default=2, help="load generator threads")
    p.add_argument("--batch", type=int, default=500, help="events per /v1/batch body")
    p.add_argument("--sdk-events", type=int, default=100_000, help="events the SDK client sends")
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument(
        "--blocking-threads",
        type=int,
        default=THREADS,
        help=f"granian --blocking-threads (default {THREADS}, as python -m gateway serves)",
    )
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    return p.parse_args(argv)


def device_context_stored(r: redis.Redis) -> bool:
    """Whether the newest account_security entry's parts read back with the device context."""
    newest: tuple[str, dict[str, str]] | None = None
    for key in r.scan_iter(match=SECURITY_STREAMS, count=1000):
        for entry_id, fields in r.xrevrange(key, count=1):
            if newest is None or entry_id > newest[0]:
                newest = (entry_id, fields)
    if newest is None:
        return False
    parts = entry_events(newest[1])
    return bool(parts) and all(all(part.get(k) == v for k, v in CONTEXT.items()) for part in parts)


def sdk_run(url: str, n: int) -> dict[str, Any]:
    """One TelemetryClient: track n events as fast as the caller can, then flush."""
    device = DeviceInfo(**{k: (lambda v=v: v) for k, v in CONTEXT.items()})
    client = TelemetryClient(url, device=device, flush_interval=0.05, backoff=Backoff(0.05, 1))
    client.grant(account_security=True, personalization=True)
    client.grant(precise_location=True)  # sensitive: a consent of its own (PIPL art. 29)
    t0 = time.perf_counter()
    for i in range(n):
        client.track("screen_view", screen=f"product/{i % 977}")
    t1 = time.perf_counter()
    if not client.flush(120):
        raise RuntimeError(f"the SDK did not flush: {client.stats}")
    t2 = time.perf_counter()
    stats = client.stats
    client.shutdown()
    if stats.stored != n or stats.tracked != n:
        raise RuntimeError(f"the SDK stored {stats.stored} of {n}: {stats}")
    return {
        "events": n,
        "track_per_s": n / (t1 - t0),
        "track_us": 1e6 * (t1 - t0) / n,
        "end_to_end_per_s": n / (t2 - t0),
        "batches": stats.batches,
        "retries": stats.retries,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    tool_version = wrk_version(wrk)
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    served: list[Served] = []
    results: dict[str, list[dict[str, Any]]] = {"batch": [], "events": [], "sdk": []}
    try:
        with valkey_server(tmp) as vk:
            r = redis.Redis.from_url(vk.connection_url, decode_responses=True)
            info = r.info("server")
            env = server_env(vk.connection_url, tmp)
            gw = serve(
                "granian",
                "gateway.wsgi:make_app",
                workers=args.workers,
                env=env,
                tmp=tmp,
                ready_path="/healthz",
                blocking_threads=args.blocking_threads,
            )
            served.append(gw)
            subject = app_subject(gw.port)
            load = Load(args.threads, args.connections, tmp, wrk)
            # as sdk_py sends them: the subject, and the consent hint of the last answer
            batch_headers = {**subject.headers, "Content-Type": "application/json"}
            targets = {
                "batch": ("/v1/batch", args.batch, BATCH_HEAD),
                "events": ("/v1/events", 100, '{"events":['),
            }
            for path, n, h in targets.values():
                load.events(gw.port, path, batch_headers, args.warmup, n, h)
            url = f"http://{HOST}:{gw.port}"
            sdk_run(url, 2000)  # warm-up
            for rnd in range(args.rounds):
                order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
                for name in order:
                    path, n, h = targets[name]
                    before = settle(r, PERSONALIZATION_STREAMS)
                    sec_before = settle(r, SECURITY_STREAMS)
                    with CpuMeter(r, gw.proc.pid) as cpu:
                        res = load.events(gw.port, path, batch_headers, args.seconds, n, h)
                    res["cpu"] = cpu.per_request(res["stored"])  # per event
                    res["in_redis"] = settle(r, PERSONALIZATION_STREAMS) - before
                    res["security_in_redis"] = settle(r, SECURITY_STREAMS) - sec_before
                    res["context_stored"] = device_context_stored(r) if name == "batch" else True
                    res["events_per_s"] = res["stored"] / res["seconds"]
                    res["per_body"] = n
                    results[name].append(res)
                    print(
                        f"  round {rnd + 1} {path:11s} {n:3d}/body "
                        f"{res['events_per_s']:9.0f} events/s ({res['rps']:.0f} req/s) "
                        f"stored {res['stored']} answered, {res['in_redis']} in Redis, "
                        f"errors {res['errors']}",
                        file=sys.stderr,
                    )
                sdk = sdk_run(url, args.sdk_events)
                results["sdk"].append(sdk)
                print(
                    f"  round {rnd + 1} sdk_py: track {sdk['track_per_s']:.0f}/s "
                    f"({sdk['track_us']:.1f} µs), end to end {sdk['end_to_end_per_s']:.0f}/s",
                    file=sys.stderr,
                )
            r.close()
    finally:
        for s in served:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([shown_python(), "bench/bench_batch.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "versions": versions(
            str(info.get("valkey_version") or info.get("redis_version")), tool_version
        ),
        "args": vars(args),
        "results": results,
    }


def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def med_cpu(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(row["cpu"][key] for row in rows)


def markdown(res: dict[str, Any]) -> str:
    a, v = res["args"], res["versions"]
    out = [
        *section_head(
            "APP ingestion (bench/bench_batch.py)",
            res,
        ),
        f"- Server: granian, {a['workers']} workers, {a['blocking_threads']} blocking threads "
        f"(`gateway.wsgi:make_app`, as `python -m gateway` serves); embedded Valkey "
        f"{v['valkey']}, appendonly yes, appendfsync everysec; load generator and SDK on the "
        "same 2 cores.",
        f"- Load: wrk {v['wrk']}, {a['threads']} threads, {a['connections']} connections, "
        f"{a['seconds']:g} s per measurement, {a['rounds']} round(s) interleaved (medians); "
        "every event fresh (a run-unique `event_id`), one APP subject with every purpose "
        "granted, its `X-Subject` and `X-Consent` sent as `sdk_py` sends them; batch bodies "
        "carry a 7-field device context.",
        "",
        "| target | events/s | req/s | p50 ms | p99 ms | answered stored | in Redis "
        "| app CPU µs/event | Valkey CPU µs/event |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (
        ("batch", f"**`POST /v1/batch`**, {a['batch']} events a body"),
        ("events", "`POST /v1/events`, 100 events a body"),
    ):
        rows = res["results"][name]
        out.append(
            f"| {label} | {med(rows, 'events_per_s'):,.0f} | {med(rows, 'rps'):,.1f} "
            f"| {med(rows, 'lat_p50_us') / 1000:.1f} | {med(rows, 'lat_p99_us') / 1000:.1f} "
            f"| {sum(r['stored'] for r in rows):,} | {sum(r['in_redis'] for r in rows):,} "
            f"| {1000 * med_cpu(rows, 'app_ms'):.0f} | {1000 * med_cpu(rows, 'valkey_ms'):.0f} |"
        )
    batch = res["results"]["batch"]
    events = res["results"]["events"]
    ratio = statistics.median(
        b["events_per_s"] / e["events_per_s"] for b, e in zip(batch, events, strict=True)
    )
    # requests in flight when wrk stops are answered to no one but still stored
    ok = all(
        r["stored"] <= r[stored] <= r["stored"] + a["connections"] * r["per_body"]
        and r.get("context_stored", True)
        for r in batch + events
        for stored in ("in_redis", "security_in_redis")
    )
    check = "ok" if ok else "MISMATCH"
    sdk = res["results"]["sdk"]
    rate = med(batch, "events_per_s")
    valkey_us = 1000 * med_cpu(batch, "valkey_ms")
    out += [
        "",
        f"- `/v1/batch` / `/v1/events` = **{ratio:.2f}** (events/s, median of the per-round "
        f"ratios); storage check (events in the streams vs answers): **{check}**"
        " (every event's account_security part stored too, and the newest entry's parts read"
        " back with the device context).",
        f"- Valkey executes commands on one thread: at {valkey_us:.0f} µs of Valkey CPU an "
        f"event, one Valkey core caps ingestion at about {1e6 / max(valkey_us, 1):,.0f} "
        "events/s whatever the number of gateway workers.",
        f"- One `sdk_py` client (memory buffer, 500-event gzipped batches, one consumer "
        f"thread): `track` {med(sdk, 'track_per_s'):,.0f} calls/s "
        f"({med(sdk, 'track_us'):.1f} µs each, device context and minimisation included); "
        f"{med(sdk, 'end_to_end_per_s'):,.0f} events/s from the first `track` to the last "
        f"acknowledgement ({sdk[0]['events']:,} events, every one stored).",
        "",
        "| target | measured | met |",
        "|---|---:|---|",
        f"| >= {TARGET_BATCH_EVENTS_PER_S:,} events/s with 500-event batches | {rate:,.0f} | "
        f"{'yes' if rate >= TARGET_BATCH_EVENTS_PER_S else '**no**'} |",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    text = markdown(res)
    print(text)
    if not args.no_docs:
        write_section("bench_batch.py", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
