"""The gateway's side of ``bench_audiences.py``: serving it on the bench's store, the first
batches of its APP subjects, the indexer's backlog (to wait until the feed is indexed), the
processes' memory, and the upkeep rounds (``/v1/batch`` with ``AUDIENCE_INDEXER`` on and
off, the gateway restarted for each measurement).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from load import BATCH_HEAD, Load, python_body
from meters import CpuMeter
from serving import HOST, AppSubject, Served, serve, server_env

from gateway.storage.keys import Keys

MB = 1_000_000


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def group_rss_mb(pgid: int) -> list[float]:
    """``VmRSS`` of each live process of a process group (the server and its workers)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
            if int(raw[raw.rfind(")") + 2 :].split()[2]) != pgid:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, ValueError):
            continue
        kib = next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS")), 0)
        out.append(round(kib * 1024 / MB, 1))
    return sorted(out)


def backlog(r: redis.Redis, keys: Keys, activity: tuple[str, ...]) -> int:
    """Feed entries the indexer has not acknowledged (delivered or not), over every shard's
    activity and change streams; a stream behind by an unknown number counts 1."""
    names = [keys.group_stream(s, p) for s in range(keys.groups) for p in activity]
    names += [keys.audience(s, "chg") for s in range(keys.groups)]
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.xinfo_stream(name)
        pipe.xinfo_groups(name)
    found = pipe.execute(raise_on_error=False)
    total = 0
    for info, groups in zip(found[::2], found[1::2], strict=True):
        if isinstance(info, Exception):
            continue  # no such stream yet
        group = None if isinstance(groups, Exception) else next(
            (g for g in groups if g["name"] == "audiences"), None
        )  # fmt: skip
        if group is None:
            total += int(info["length"])
            continue
        total += int(group["pending"])
        if isinstance(group.get("lag"), int):
            total += group["lag"]
        else:
            ids = (info["last-generated-id"], group["last-delivered-id"])
            last, seen = ([int(x) for x in str(i).split("-")] for i in ids)
            total += last > seen
    return total


def drain(r: redis.Redis, keys: Keys, activity: tuple[str, ...], timeout: float = 300) -> float:
    """Seconds until the indexer acknowledged the whole feed (NaN: not within ``timeout``)."""
    t0 = time.monotonic()
    while backlog(r, keys, activity):
        if time.monotonic() - t0 > timeout:
            say(f"  the feed was not drained in {timeout:g} s")
            return float("nan")
        time.sleep(0.05)
    return time.monotonic() - t0


def quiet_store(r: redis.Redis, timeout: float = 600) -> None:
    """Until no AOF rewrite runs or waits (writing the index grows the file past the size
    that starts one), so that no measurement shares the cores with it."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        info = r.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        time.sleep(0.2)


def rewrite_aof(r: redis.Redis) -> None:
    """A rewrite of the append-only file, started once none runs: the rounds' events can
    start one by themselves while the feed drains (a slow machine's run failed on
    BGREWRITEAOF's "already in progress"); one that starts in between serves as well."""
    quiet_store(r)
    try:
        r.bgrewriteaof()
    except redis.ResponseError as e:
        if "already in progress" not in str(e):
            raise
    time.sleep(0.1)


def first_batches(port: int, subjects: list[AppSubject], n: int) -> None:
    """One batch from each subject (people new to the index, numbered by the gateway)."""
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60) as c:
        for i, s in enumerate(subjects):
            body = python_body(f"first-{i}", 0, n, BATCH_HEAD)
            hdrs = {**s.headers, "Content-Type": "application/json"}
            resp = c.post("/v1/batch", content=body, headers=hdrs)
            if resp.status_code >= 300:
                raise RuntimeError(f"/v1/batch answered {resp.status_code}: {resp.text[:300]}")


def upkeep(
    args: argparse.Namespace,
    url: str,
    tmp: Path,
    env_extra: dict[str, str],
    subjects: list[AppSubject],
    activity: tuple[str, ...],
) -> dict[str, list[dict[str, Any]]]:
    r = redis.Redis.from_url(url, decode_responses=True)
    keys = Keys()
    load = Load(args.threads, args.connections, tmp, shutil.which("wrk"))
    rotate = [{**s.headers, "Content-Type": "application/json"} for s in subjects]
    results: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for rnd in range(args.rounds):
        for mode in ("on", "off") if rnd % 2 == 0 else ("off", "on"):
            env = server_env(url, tmp, extra={**env_extra, "AUDIENCE_INDEXER": mode})
            gw = serve_gateway(args, env, tmp, f"gateway-{mode}")
            try:
                load.events(gw.port, "/v1/batch", {}, args.warmup, args.batch, BATCH_HEAD, rotate)
                ready_s = drain(r, keys, activity) if mode == "on" else 0.0
                # the rounds' events grow the append-only file past the size that starts a
                # rewrite: measured during one, "on" in round 3 ran at 0.5-0.6x two runs in
                # a row, the fork sharing the cores. Rewritten now, it has room to grow.
                rewrite_aof(r)
                quiet_store(r)
                with CpuMeter(r, gw.proc.pid) as cpu:
                    res = load.events(
                        gw.port, "/v1/batch", {}, args.seconds, args.batch, BATCH_HEAD, rotate
                    )
                res["cpu"] = cpu.per_request(res["stored"])
                res["events_per_s"] = res["stored"] / res["seconds"]
                res["ready_s"] = ready_s
                res["lag_s"] = drain(r, keys, activity) if mode == "on" else None
                res["rss_mb"] = group_rss_mb(gw.proc.pid)
            finally:
                gw.stop()
                r.delete(Keys.AUDIENCE_LEASE)  # a stopped indexer keeps it for 30 s
            results[mode].append(res)
            lag = f", feed drained {res['lag_s']:.2f} s after" if mode == "on" else ""
            say(
                f"  round {rnd + 1} indexer {mode:3s}: {res['events_per_s']:9.0f} events/s, "
                f"app CPU {1000 * res['cpu']['app_ms']:.0f} µs/event, errors {res['errors']}"
                f"{lag}"
            )
    r.close()
    return results


def serve_gateway(args: argparse.Namespace, env: dict[str, str], tmp: Path, name: str) -> Served:
    return serve(
        "granian",
        "gateway.wsgi:make_app",
        workers=args.workers,
        env=env,
        tmp=tmp,
        ready_path="/healthz",
        blocking_threads=args.blocking_threads,
        name=name,
    )
