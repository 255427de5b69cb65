"""Drills through the production front (issue 15): a bounded mixed load while faults strike,
then what clients were told reconciled against what the store holds.

    .venv/bin/python bench/drill.py [--seconds 40] [--cluster] [--write docs/benchmarks.md]

Everything goes through nginx (the shipped nginx.conf, started by gateway/cli/front.py) over
TLS, to two gateway instances:

- web visitors, each with a consent of its own (personalisation), sending beacons
  (``GET /p.gif`` with an event id of the drill's): a beacon is acknowledged when it is
  answered 200 without ``X-Error-Code`` or ``X-Reason`` (stored);
- APP installations through ``sdk_py`` (``TelemetryClient`` with an SQLite spool) tracking
  screen views: each tracked event is acknowledged once its client flushed it, and at the
  end every client is flushed until its spool is empty;
- consent changes: subjects of their own granting and withdrawing advertising, each answered
  receipt acknowledged (they store no events, so no withdrawal deletes a drill event).

Faults, at fixed fractions of the run: on one store, kill -9 of a gateway instance (and its
restart), then kill -9 of the store and its restart from its append-only file; with
``--cluster`` (3 masters with a replica each), a gateway instance killed and a master failed
over to its replica by kill -9. At the end: lost and duplicated acknowledged events (each
event id must be in the store exactly once), lost acknowledged consents (each receipt on its
subject's ledger), and the 429 onset: beacons from one address at twice the front's rate for
the events zone, the rate it accepted after the burst against the configured one.

``run()`` is what tests/integration/test_drill.py runs in a short, bounded form.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from redis.cluster import RedisCluster

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.cli.front import Front, free_port  # noqa: E402
from sdk_py import TelemetryClient  # noqa: E402
from sdk_py.transport import Transport  # noqa: E402

CURRENT = "2026-11-01"
EVENTS_RATE = 50.0  # nginx.conf: zone events, rate=50r/s
EVENTS_BURST = 100  # and burst=100


@dataclass
class Tally:
    beacons: list[str] = field(default_factory=list)  # acknowledged event ids
    app_tracked: int = 0
    consents: list[tuple[str, str]] = field(default_factory=list)  # (subject, receipt id)
    refused: dict[str, int] = field(default_factory=dict)  # status -> count (not acknowledged)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse(self, status: int | str) -> None:
        with self.lock:
            self.refused[str(status)] = self.refused.get(str(status), 0) + 1


@dataclass
class Result:
    seconds: float
    store: str
    faults: list[str]
    acknowledged_events: int
    lost_events: int
    duplicated_events: int
    acknowledged_consents: int
    lost_consents: int
    refused: dict[str, int]
    onset_rate: float | None = None  # beacons accepted per second after the burst
    onset_error: float | None = None  # against EVENTS_RATE


def _client(front: Front) -> httpx.Client:
    return httpx.Client(base_url=front.url, verify=False, timeout=10)


def _consent(c: httpx.Client, purposes: dict[str, bool], source: str, **kw: Any) -> Any:
    body = {"policy_version": CURRENT, "purposes": purposes, "source": source}
    return c.post("/v1/consent", json=body, **kw)


def _visitor(front: Front, stop: threading.Event, tally: Tally) -> None:
    with _client(front) as c:
        while not stop.is_set():
            try:
                resp = _consent(c, {"personalization": True}, "banner")
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if resp.status_code == 201:
                break
            time.sleep(0.2)
        while not stop.is_set():
            eid = f"drill-b-{uuid.uuid4().hex[:20]}"
            try:
                resp = c.get(
                    "/p.gif",
                    params={"type": "page_view", "event_id": eid, "url": "https://shop.example/p"},
                    headers={"Accept": "image/gif", "Sec-Fetch-Dest": "image"},
                )
            except httpx.HTTPError:
                tally.refuse("none")
                continue
            if (
                resp.status_code == 200
                and "X-Error-Code" not in resp.headers
                and "X-Reason" not in resp.headers
            ):
                with tally.lock:
                    tally.beacons.append(eid)
            else:
                tally.refuse(resp.status_code)
            time.sleep(0.05)


def _app(front: Front, spool: Path, stop: threading.Event, tally: Tally) -> TelemetryClient:
    transport = Transport(front.url, timeout=5, verify=False)
    client = TelemetryClient(front.url, spool=spool, transport=transport, flush_interval=0.5)
    while not stop.is_set():
        try:
            client.grant(personalization=True)
            break
        except Exception:  # the gateway or the store is down this moment: ask again
            time.sleep(0.3)
    return client


def _app_loop(client: TelemetryClient, stop: threading.Event, tally: Tally) -> None:
    while not stop.is_set():
        if client.track("screen_view", screen="drill"):
            with tally.lock:
                tally.app_tracked += 1
        time.sleep(0.05)


def _changer(front: Front, stop: threading.Event, tally: Tally) -> None:
    with _client(front) as c:
        made = None
        while made is None and not stop.is_set():
            try:
                answer = c.post("/v1/subjects")
                made = answer.json() if answer.status_code == 201 else None
            except (httpx.HTTPError, ValueError):
                made = None
            if made is None:
                time.sleep(0.3)
        if made is None:
            return
        grant = True
        while not stop.is_set():
            try:
                token = {"X-Subject": made["token"]}
                resp = _consent(c, {"advertising": grant}, "app", headers=token)
            except httpx.HTTPError:
                tally.refuse("none")
                continue
            if resp.status_code == 201:
                with tally.lock:
                    tally.consents.append((made["subject"], resp.json()["receipt"]["id"]))
                grant = not grant
            else:
                tally.refuse(resp.status_code)
            time.sleep(0.2)


def _store_client(url: str, cluster: bool) -> Any:
    if cluster:
        return RedisCluster.from_url(url, decode_responses=True)
    return redis.Redis.from_url(url, decode_responses=True)


def reconcile(
    front: Front, tally: Tally, url: str, cluster: bool
) -> tuple[int, int, int, int, int]:
    """(events acknowledged, lost, duplicated, consents acknowledged, lost)."""
    r = _store_client(url, cluster)
    seen: dict[str, int] = {}
    app_ids: set[str] = set()
    keys = r.scan_iter("*:ev:personalization", count=1000)
    for key in keys:
        for _, fields in r.xrange(key):
            for part in json.loads(fields["events"]):
                eid = part["event_id"]
                seen[eid] = seen.get(eid, 0) + 1
                if part.get("type") == "screen_view":
                    app_ids.add(eid)
    acked = set(tally.beacons)
    lost = sum(1 for e in acked if e not in seen)
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    lost += max(tally.app_tracked - len(app_ids), 0)  # every tracked event, once
    consent_lost = 0
    from gateway.storage.keys import Keys

    k = Keys()
    by_subject: dict[str, set[str]] = {}
    for sid, receipt in tally.consents:
        if sid not in by_subject:
            by_subject[sid] = {json.loads(e)["receipt_id"] for e in r.lrange(k.ledger(sid), 0, -1)}
        consent_lost += receipt not in by_subject[sid]
    r.close()
    return (
        len(acked) + tally.app_tracked,
        lost,
        duplicated,
        len(tally.consents),
        consent_lost,
    )


def onset(front: Front, seconds: float = 5.0, senders: int = 4) -> float:
    """Beacons (no subject: nothing stored) at twice the events zone's rate from one address,
    offered by ``senders`` clients on a shared schedule: the rate nginx accepts from the first
    429 on (before it, the burst drains), against the zone's configured rate."""
    interval = senders / (2 * EVENTS_RATE)  # each sender's share of twice the rate
    answers: list[tuple[float, int]] = []
    lock = threading.Lock()
    began = time.monotonic() + 0.2

    def send(i: int) -> None:
        with _client(front) as c:
            c.get("/healthz")  # the connection made before the clock starts
            n = 0
            while True:
                target = began + (n + i / senders) * interval
                if target - began >= seconds:
                    return
                pause = target - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                n += 1
                sent = time.monotonic()
                status = c.get("/p.gif", headers={"Sec-Fetch-Dest": "image"}).status_code
                with lock:
                    answers.append((sent, status))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers.sort()
    first = next((t for t, status in answers if status == 429), None)
    if first is None:
        return float("inf")  # never limited: the offered rate never passed rate + burst
    after = [(t, status) for t, status in answers if t >= first]
    accepted = sum(status != 429 for _, status in after)
    return accepted / (after[-1][0] - first)


def run(
    seconds: float,
    *,
    cluster: bool = False,
    visitors: int = 6,
    apps: int = 3,
    changers: int = 2,
    log: Callable[[str], None] = print,
) -> Result:
    root = Path(tempfile.mkdtemp(prefix="drill-"))
    root.chmod(0o711)  # nginx's workers (nobody, under root) enter it
    store = None
    redis_url = None
    if cluster:
        from tests.cluster import start_cluster

        store = start_cluster(root / "cluster", masters=3, replicas=1)
        redis_url = store.nodes[0].url
    front = Front(root / "front", free_port(), redis_url, env={"GATEWAY_RATE_LIMITS": "off"})
    tally = Tally()
    faults: list[str] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    clients: list[TelemetryClient] = []
    try:
        front.start()
        for _ in range(visitors):
            threads.append(threading.Thread(target=_visitor, args=(front, stop, tally)))
        for i in range(apps):
            client = _app(front, root / f"spool-{i}.sqlite", stop, tally)
            clients.append(client)
            threads.append(threading.Thread(target=_app_loop, args=(client, stop, tally)))
        for _ in range(changers):
            threads.append(threading.Thread(target=_changer, args=(front, stop, tally)))
        for t in threads:
            t.start()
        began = time.monotonic()

        def at(fraction: float) -> None:
            time.sleep(max(0.0, began + fraction * seconds - time.monotonic()))

        at(0.2)
        victim = front.gateway_ports[0]
        front.kill_gateway(victim)
        faults.append(f"kill -9 gateway :{victim}")
        log(faults[-1])
        at(0.35)
        front.start_gateway(victim)
        faults.append(f"gateway :{victim} restarted")
        log(faults[-1])
        at(0.5)
        if cluster:
            master = next(n for n in store.nodes if n.role == "master")
            store.failover(master, force_kill=True)
            faults.append(f"master {master.name} failed over to its replica by kill -9")
        else:
            front.kill_store()
            faults.append("kill -9 store")
            log(faults[-1])
            time.sleep(1.0)
            front.start_store()
            faults.append("store restarted from its AOF")
        log(faults[-1])
        at(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        for client in clients:  # every tracked event delivered: the spool empty
            deadline = time.monotonic() + 60
            while not client.flush(5) and time.monotonic() < deadline:
                pass
            client.shutdown(5)
        url = str(front.redis_url)
        if store is not None:  # a node alive after the failover
            url = next(n for n in store.nodes if n.alive).url
        acked, lost, dup, consents, consents_lost = reconcile(front, tally, url, cluster)
        rate = onset(front)
        return Result(
            seconds,
            "cluster (3 masters, 3 replicas)" if cluster else "embedded Valkey",
            faults,
            acked,
            lost,
            dup,
            consents,
            consents_lost,
            dict(sorted(tally.refused.items())),
            round(rate, 1),
            round(abs(rate - EVENTS_RATE) / EVENTS_RATE, 3),
        )
    finally:
        stop.set()
        front.stop()
        if store is not None:
            store.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(results: list[Result], command: str) -> str:
    lines = [
        "## Drills through the front (bench/drill.py)",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.node()}, "
        f"{platform.machine()}, shared 2 cores; command: `{command}`.",
        "- Load through nginx (the shipped nginx.conf, TLS): web visitors sending beacons, "
        "APP installations through sdk_py with an SQLite spool, subjects changing consent; two "
        "gateway instances, one worker each. Every client is on 127.0.0.1, so the front's "
        "per-address events limit (50/s, burst 100) refuses much of the beacons' load (429, "
        "not acknowledged): by design, and the drill counts what was acknowledged.",
        "",
        "| store | faults | events acknowledged | lost | duplicated | consents acknowledged "
        "| lost | refused (not acknowledged) | 429 onset (configured 50/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.store} | {'; '.join(r.faults)} | {r.acknowledged_events} | {r.lost_events} "
            f"| {r.duplicated_events} | {r.acknowledged_consents} | {r.lost_consents} "
            f"| {', '.join(f'{k}: {v}' for k, v in r.refused.items()) or 'none'} "
            f"| {r.onset_rate}/s ({(r.onset_error or 0) * 100:.1f} % off) |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--seconds", type=float, default=40)
    cli.add_argument("--cluster", action="store_true", help="also the cluster drill")
    cli.add_argument("--write", type=Path, help="append the results to this markdown file")
    args = cli.parse_args()
    results = [run(args.seconds)]
    if args.cluster:
        results.append(run(args.seconds, cluster=True))
    text = report(results, "python bench/drill.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.write:
        with args.write.open("a") as f:
            f.write("\n" + text)
    bad = any(r.lost_events or r.duplicated_events or r.lost_consents for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
