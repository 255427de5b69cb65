"""A probe: what deduplication costs Valkey in a ``POST /v1/events`` write, and how that
grows with the subject's dedup set.

Run: .venv/bin/python bench/dedup_cost.py [--calls 500] [--grow 2000000]

Builds the gateway on a Valkey of its own, grants every purpose to one browser through the
real consent API, posts one body of 100 events (``load.python_body``: the benchmarks' mix,
client event ids) and keeps the call it went out in (keys and arguments of
``lua/events.lua``). Then replays that call ``--calls`` times with fresh event ids each time
and reads Valkey's CPU (``INFO cpu``) and the time inside the script (``INFO
commandstats``) per event:

* with a small dedup set (the subject's first thousands of ids);
* the same writes flagged ``m`` (ids minted by the gateway: the dedup set neither read nor
  written), what the rest of the write costs;
* with the dedup set grown to ``--grow`` ids, as ``bench_gateway.py``'s one subject has it
  after a run (it posts every event as one subject), then flagged ``m`` again.

Prints per event. Writes nothing to docs/benchmarks.md: the figures it gave are quoted where
they are used ("Beacon hot path").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import redis  # noqa: E402
from load import python_body  # noqa: E402
from serving import CHROME_UA, gateway_in_process  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from gateway.storage.client import lua  # noqa: E402
from gateway.storage.group import FLAGS, IDS, PURPOSES  # noqa: E402

EVENTS = 100


def one_post(app: Any, cookie: str) -> tuple[list[str], list[Any]]:
    """The keys and arguments of the call one 100-event ``POST /v1/events`` went out in
    (written directly, beside the group commit's line: ``group.DIRECT_EVENTS``)."""
    group = app.extensions["gateway"].store._group
    direct = group._direct
    sent: list[tuple[list[str], list[Any]]] = []

    def keep(*, keys: list[str], args: list[Any], client: Any) -> Any:
        sent.append((list(keys), list(args)))
        return direct(keys=keys, args=args, client=client)

    environ = EnvironBuilder(
        path="/v1/events",
        method="POST",
        data=python_body("probe", 0, EVENTS),
        headers={"Cookie": cookie, "Content-Type": "application/json", "User-Agent": CHROME_UA},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    ).get_environ()
    statuses: list[str] = []
    group._direct = keep
    try:
        body = b"".join(app.wsgi_app(environ, lambda status, headers: statuses.append(status)))
    finally:
        group._direct = direct
    if not statuses[0].startswith("202") or b'"stored":100' not in body or len(sent) != 1:
        raise RuntimeError(f"the post answered {statuses} {body[:300]!r} in {len(sent)} calls")
    return sent[0]


class Replay:
    """The kept call, sent again with fresh ids (or flagged ``m``)."""

    def __init__(self, r: redis.Redis, keys: list[str], args: list[Any]) -> None:
        self.r, self.keys, self.args = r, keys, args
        self.sha = r.script_load(lua("events"))
        self.ids_at = IDS + 4 * int(args[PURPOSES])
        self._seq = 0

    def _fresh(self, flags: str) -> Iterator[list[Any]]:
        while True:
            self._seq += 1
            args = list(self.args)
            args[0] = int(time.time() * 1000)
            args[FLAGS] = flags
            args[self.ids_at] = "\n".join(f"p{self._seq}-{i}" for i in range(EVENTS))
            yield args

    def cost(self, calls: int, flags: str = "") -> tuple[float, float]:
        """Valkey's CPU an event and the time inside the script an event (µs)."""
        fresh = self._fresh(flags)
        self.r.config_resetstat()
        before = self.r.info("cpu")
        for _ in range(calls):
            answer = self.r.evalsha(self.sha, len(self.keys), *self.keys, *next(fresh))
            if answer[0][0] != b"ok":
                raise RuntimeError(f"the write answered {answer[0][0]!r}")
        after = self.r.info("cpu")
        inside = float(self.r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
        used = sum(after[k] - before[k] for k in ("used_cpu_user", "used_cpu_sys"))
        return 1e6 * used / calls / EVENTS, inside / EVENTS

    def ids(self) -> int:
        """The event ids in the subject's dedup set."""
        return int(self.r.zcard(self.keys[1]))

    def grow(self, size: int) -> None:
        fresh = self._fresh("")
        while self.ids() < size:
            self.r.evalsha(self.sha, len(self.keys), *self.keys, *next(fresh))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--grow", type=int, default=2_000_000)
    args = ap.parse_args()
    with gateway_in_process(Path(tempfile.mkdtemp())) as (app, cookie):
        keys, argv = one_post(app, cookie)
        if "m" in argv[FLAGS]:
            raise RuntimeError("the post's ids were minted: nothing would be deduplicated")
        replay = Replay(redis.Redis.from_url(os.environ["REDIS_URL"]), keys, argv)

        def show(what: str, flags: str = "") -> None:
            size = replay.ids()
            cpu, inside = replay.cost(args.calls, flags)
            print(
                f"  {what:10s} (dedup set {size:9,d} ids): Valkey {cpu:5.2f} µs an event, "
                f"{inside:5.2f} inside the script"
            )

        print(f"{args.calls} writes of {EVENTS} events a measurement:")
        show("dedup")
        show("no dedup", "m")
        replay.grow(args.grow)
        show("dedup")
        show("no dedup", "m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
