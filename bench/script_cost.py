"""A probe: what one pixel write costs Valkey, by the size of the call that carries it.

Run: .venv/bin/python bench/script_cost.py [--calls 3000] [--tries 2]

Builds the gateway on a Valkey of its own, grants every purpose to one browser through the
real consent API, sends one real beacon and keeps the call its group commit made (keys and
arguments of ``lua/events.lua``, minted id: never deduplicated, so copies store again). Then,
over ``--calls`` calls each, reads ``INFO cpu`` (all of Valkey's CPU) and ``INFO
commandstats`` (the time inside the script) for:

* ``EVALSHA`` of ``return 1`` with the same keys and arguments: a call's fixed cost;
* a script doing one ``XADD`` with them: a call that writes (and so appends to the AOF);
* ``lua/events.lua`` with the write, alone and in calls of 4, 16 and 32 copies (the group
  commit's calls).

Prints per call and per write. Writes nothing to docs/benchmarks.md: the figures it gave are
quoted where they are used ("Beacon hot path").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import redis  # noqa: E402
from serving import gateway_in_process, pixel_environ  # noqa: E402

from gateway.storage.client import lua  # noqa: E402

SIZES = (1, 4, 16, 32)


def one_write(app: Any, cookie: str) -> tuple[list[str], list[Any]]:
    """The keys and arguments of the call one beacon's write went out in."""
    group = app.extensions["gateway"].store._group
    line = group._script
    sent: list[tuple[list[str], list[Any]]] = []

    def keep(*, keys: list[str], args: list[Any], client: Any) -> Any:
        sent.append((list(keys), list(args)))
        return line(keys=keys, args=args, client=client)

    group._script = keep
    statuses: list[str] = []
    try:
        app.wsgi_app(pixel_environ(cookie), lambda status, headers: statuses.append(status))
    finally:
        group._script = line
    if not statuses[0].startswith("200") or len(sent) != 1:
        raise RuntimeError(f"the beacon answered {statuses} in {len(sent)} calls")
    return sent[0]


def cost(
    r: redis.Redis, script: Callable[..., Any], keys: list[str], args: list[Any], calls: int
) -> tuple[float, float]:
    """Valkey's CPU a call (µs, ``INFO cpu``) and the time inside the script a call (µs)."""
    r.config_resetstat()
    before = r.info("cpu")
    for _ in range(calls):
        script(keys=keys, args=args)
    inside = float(r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
    after = r.info("cpu")
    used = sum(after[k] - before[k] for k in ("used_cpu_user", "used_cpu_sys"))
    return 1e6 * used / calls, inside


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--tries", type=int, default=2)
    args = ap.parse_args()
    with gateway_in_process(Path(tempfile.mkdtemp())) as (app, cookie):
        keys, argv = one_write(app, cookie)
        if "m" not in argv[4]:
            raise RuntimeError("the beacon's id was not minted: copies would be duplicates")
        r = redis.Redis.from_url(os.environ["REDIS_URL"])
        scripts = {
            "return 1": r.register_script("return 1"),
            "one XADD": r.register_script("redis.call('XADD', KEYS[5], '*', 'a', ARGV[6])"),
            "events.lua": r.register_script(lua("events")),
        }
        for attempt in range(args.tries):
            print(f"try {attempt + 1}: one write a call")
            for name, script in scripts.items():
                cpu, inside = cost(r, script, keys, argv, args.calls)
                print(f"  {name:10s} Valkey {cpu:6.1f} µs a call, {inside:6.1f} inside the script")
            for n in SIZES:
                calls = max(1, args.calls // n)
                cpu, inside = cost(r, scripts["events.lua"], keys * n, argv * n, calls)
                print(
                    f"  events.lua, calls of {n:2d}: Valkey {cpu / n:6.1f} µs a write, "
                    f"{inside / n:6.1f} inside the script"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
