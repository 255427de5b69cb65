"""Meters: what a measurement stored, and what CPU it cost, read beside the load.

Throughput alone is a poor figure on a shared 2-core machine, so every measurement also
reads:

* what the store holds afterwards: the events in the purpose streams (the gateway appends
  one entry per request and purpose holding ``n`` events: their ``n`` are summed inside the
  server rather than pulling every event over the wire; the floor app appends one entry per
  event), read once in-flight requests have finished (``settle``), to check that what was
  answered stored was stored;
* CPU (``CpuMeter``): the app's server processes (``/proc/<pid>/stat`` of its process
  group), Valkey (``INFO cpu``: the server process, and its AOF-rewrite forks apart), the
  load generator (this process's children) and the rest of the machine (``/proc/stat``),
  per request: the steadier view of what a change costs.

Stream names follow ``gateway/storage/keys.py``: ``{g<i>.<n>}:ev:<purpose>``, one per slot
group. A pattern is counted on one server (or one cluster master: ``SCAN`` there sees its
own keys only, and each key is counted by a script of its own, as a cluster requires).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import redis

PERSONALIZATION_STREAMS = "*:ev:personalization"
SECURITY_STREAMS = "*:ev:account_security"
FLOOR_PREFIX = "bench:"  # floor_app.py's streams: one entry per event

# The gateway's entries hold one request's events for one purpose (fields sid, n, events):
# sum their n where they are, rather than pull every event over the wire.
_SUM_N = """
local total = 0
local start = '-'
while true do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1000)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'n' then total = total + tonumber(f[i + 1]) end
    end
  end
  start = '(' .. batch[#batch][1]
end
return total
"""


def xlen_sum(r: redis.Redis, pattern: str) -> int:
    """Events stored in the streams matching ``pattern`` (on this server only)."""
    keys = list(r.scan_iter(match=pattern, count=1000))
    if pattern.startswith(FLOOR_PREFIX):
        return sum(r.xlen(k) for k in keys)  # the floor: one entry per event
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.eval(_SUM_N, 1, key)
    return sum(int(x) for x in pipe.execute()) if keys else 0


def settle(r: redis.Redis, pattern: str, timeout: float = 5.0) -> int:
    """Stream lengths once in-flight requests have finished (two equal reads in a row)."""
    last = xlen_sum(r, pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = xlen_sum(r, pattern)
        if now == last:
            return now
        last = now
    return last


def settle_many(rs: dict[str, redis.Redis], pattern: str, timeout: float = 5.0) -> dict[str, int]:
    """``settle`` over several servers (a cluster's masters): each one's events, once the
    total has stopped moving."""
    last = {name: xlen_sum(r, pattern) for name, r in rs.items()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = {name: xlen_sum(r, pattern) for name, r in rs.items()}
        if now == last:
            return now
        last = now
    return last


# ---------------------------------------------------------------------- CPU accounting
CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        if int(rest[2]) == pgid:
            total += int(rest[11]) + int(rest[12])
    return total / CLK_TCK


def machine_ticks() -> dict[str, int]:
    """/proc/stat's first line: busy, idle and steal ticks of the whole machine."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "steal": steal}


def valkey_cpu_s(r: redis.Redis) -> tuple[float, float]:
    """Valkey's CPU seconds so far: the server process, and its forks (AOF rewrite, RDB)."""
    c = r.info("cpu")
    own = float(c.get("used_cpu_sys", 0)) + float(c.get("used_cpu_user", 0))
    forks = float(c.get("used_cpu_sys_children", 0)) + float(c.get("used_cpu_user_children", 0))
    return own, forks


class CpuMeter:
    """CPU used during one measurement by the app's server, Valkey, the load generator and
    the machine as a whole; per request, so the cost of each part can be compared."""

    def __init__(self, r: redis.Redis, pgid: int) -> None:
        self.r, self.pgid = r, pgid

    def __enter__(self) -> CpuMeter:
        self.app0 = group_cpu_s(self.pgid)
        self.vk0 = valkey_cpu_s(self.r)
        self.kids0 = _children_cpu_s()
        self.m0 = machine_ticks()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.t0
        self.app = group_cpu_s(self.pgid) - self.app0
        vk1 = valkey_cpu_s(self.r)
        self.vk_own = vk1[0] - self.vk0[0]
        self.vk_forks = vk1[1] - self.vk0[1]
        self.vk = self.vk_own + self.vk_forks
        self.load = _children_cpu_s() - self.kids0
        m1 = machine_ticks()
        d = {k: m1[k] - self.m0[k] for k in m1}
        total = max(1, sum(d.values()))
        busy_cores = d["busy"] / total * (os.cpu_count() or 1)
        self.machine = {
            "busy_pct": round(100 * d["busy"] / total, 1),
            "steal_pct": round(100 * d["steal"] / total, 1),
            # CPU used by everything else on the machine (other users' jobs,
            # kernel softirq): how noisy this measurement was
            "other_cores": round(
                max(0.0, busy_cores - (self.app + self.vk + self.load) / self.wall), 2
            ),
        }

    def per_request(self, n: int) -> dict[str, Any]:
        n = max(1, n)
        return {
            "app_ms": round(1000 * self.app / n, 3),
            "valkey_ms": round(1000 * self.vk / n, 3),  # server + its forks
            "valkey_server_ms": round(1000 * self.vk_own / n, 3),
            "valkey_forks_ms": round(1000 * self.vk_forks / n, 3),
            "loadgen_ms": round(1000 * self.load / n, 3),
            "app_cores": round(self.app / self.wall, 2),
            "valkey_cores": round(self.vk / self.wall, 2),
            "loadgen_cores": round(self.load / self.wall, 2),
            **self.machine,
        }


def _children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime
