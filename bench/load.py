"""Load generation: what a benchmark sends, and the tool that sends it.

The load generator is ``wrk`` (``apt-get install wrk``), driven by Lua scripts written on the
fly: the pixel's needs no Lua per request (wrk builds the request once, so it takes as little
CPU from the server as it can on a shared 2-core machine); the events' builds each body from
a realistic mix of web events with run-unique ids (the gateway drops an ``event_id`` it saw
in the last 24 h as a duplicate) and reads back, per answer, how many events were stored. Its
``done`` hook prints one JSON line the runs are read from. Without wrk, a multi-process
``http.client`` generator does the same (slower: the figures say which).

Kept apart from the scripts so that every benchmark sends the same bodies the same way, and
their figures compare. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving import CHROME_UA, HOST

PAGE_URL = "https://shop.example.com/products/m3-hex-socket-cap-screw?sku=SCS-M3-12"
PIXEL_QUERY = "type=page_view&url=" + urllib.parse.quote(PAGE_URL, safe="")
BROWSER_HEADERS = {
    "User-Agent": CHROME_UA,
    "Accept": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
    "Referer": PAGE_URL,
}
EVENTS_HEAD = '{"events":['
# The device context an APP sends with each batch (sdk_py's DeviceInfo): 7 fields.
DEVICE_CONTEXT = {
    "device_model": "HUAWEI Mate 60 Pro",
    "device_brand": "HUAWEI",
    "os": "HarmonyOS",
    "os_version": "4.2",
    "device_id": "0f8e2c1a-5b7d-4e3f-9a6b-1c2d3e4f5a6b",
    "carrier": "中国移动",
    "app_version": "3.8.1",
}
BATCH_HEAD = '{"context":' + json.dumps(DEVICE_CONTEXT, ensure_ascii=False) + ',"events":['


def wrk_version(wrk: str) -> str:
    """``wrk -v``'s version, e.g. ``debian/4.1.0-3+b2``."""
    v = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    return (v.stdout + v.stderr).split(" [")[0].replace("wrk ", "").strip()


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


def python_body(prefix: str, seq: int, n: int, head: str = EVENTS_HEAD) -> bytes:
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = [
        EVENT_TEMPLATES[EVENT_MIX[i % len(EVENT_MIX)]] % (f"{prefix}-{seq}-{i}", ts)
        for i in range(n)
    ]
    return (head + ",".join(parts) + "]}").encode()


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


def lua_table(headers: dict[str, str]) -> str:
    return "{ " + ", ".join(f"[ {lua_str(k)} ] = {lua_str(v)}" for k, v in headers.items()) + " }"


def events_lua(
    path: str,
    headers: dict[str, str],
    nonce: str,
    n: int,
    head: str = EVENTS_HEAD,
    rotate: list[dict[str, str]] | None = None,
) -> str:
    """A wrk script posting ``n`` fresh events a request: ``head`` + events + ``]}``.

    ``rotate``: header sets (each added to ``headers``) taken in turn, one a request, each
    thread starting at its own: several subjects' tokens over the same connections."""
    templates = ", ".join(lua_str(t.replace("%s", "\x01")) for t in EVENT_TEMPLATES)
    mix = ", ".join(str(i + 1) for i in EVENT_MIX)
    rotation = ", ".join(lua_table({**headers, **h}) for h in rotate or ())
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
local ROTATE = {{ {rotation} }}
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
  local h = nil  -- wrk.headers
  if #ROTATE > 0 then
    h = ROTATE[(seq + tid * 7) % #ROTATE + 1]  -- wrk.format adds Host and Content-Length
  end
  return wrk.format("POST", PATH, h, HEAD .. table.concat(pieces, ",", 1, N) .. ']}')
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
        head: str = EVENTS_HEAD,
        rotate: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """``n`` fresh events a request for ``seconds``; ``rotate``: see ``events_lua``."""
        self._events_runs += 1
        nonce = f"{self.nonce}r{self._events_runs}"
        headers = {"Content-Type": "text/plain;charset=UTF-8", **headers}
        if self.wrk:
            script = events_lua(path, headers, nonce, n, head, rotate)
            return self._wrk(port, path, script, seconds)
        return fallback_run(
            port,
            "POST",
            path,
            headers,
            seconds,
            self.threads,
            self.connections,
            (nonce, n, head),
            [{**headers, **h} for h in rotate or ()],
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

    port, method, path, headers, seconds, conns, body_spec, rotate, wid = args
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
                nonce, n, head = body_spec
                body = python_body(f"{nonce}-{wid}x{tid}", seq, n, head)
            sent = rotate[(seq + tid * 7 + wid) % len(rotate)] if rotate else headers
            t0 = time.perf_counter()
            try:
                c.request(method, path, body=body, headers=sent)
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
    body_spec: tuple[str, int, str] | None,
    rotate: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    import multiprocessing

    per = max(1, connections // procs)
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        parts = pool.map(
            _fallback_worker,
            [
                (port, method, path, headers, seconds, per, body_spec, rotate or [], w)
                for w in range(procs)
            ],
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
