"""The production front for real: Debian's nginx with the shipped ``nginx.conf``, started by
the same code as ``./scripts/front`` (``gateway/cli/front.py``), two gateway instances behind
it and the embedded Valkey. Through it: TLS and HTTP/2, the client address the gateway stores
(a client's own X-Forwarded-For never believed), 413 and 429 in the gateway's JSON shape, the
SDK's caching and compression, /metrics kept private, and a gateway instance killed while
requests flow: nginx moves to the other one and nothing acknowledged is lost."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.cli.front import BROTLI, NGINX, ROOT, Front, free_port, render
from tests.helpers import CURRENT

pytestmark = pytest.mark.slow


def run_dir() -> Path:
    """A run folder nginx's workers can enter: run as root, nginx serves as ``nobody``, and
    pytest's own temporary folders are closed to others."""
    made = Path(tempfile.mkdtemp(prefix="front-"))
    made.chmod(0o711)
    return made


@pytest.fixture(scope="module")
def front() -> Iterator[Front]:
    if not Path(NGINX).exists():  # the test command installs it: never skip silently
        raise RuntimeError("nginx is missing: run ./scripts/test (apt-get install nginx)")
    folder = run_dir()
    running = Front(folder, free_port()).start()
    yield running
    running.stop()
    shutil.rmtree(folder, ignore_errors=True)


def client(front: Front) -> httpx.Client:
    return httpx.Client(base_url=front.url, verify=False, timeout=10)


def app_subject(c: httpx.Client, **purposes: bool) -> tuple[str, str]:
    made = c.post("/v1/subjects")
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    resp = c.post(
        "/v1/consent",
        json={"policy_version": CURRENT, "purposes": purposes, "source": "app"},
        headers={"X-Subject": token},
    )
    assert resp.status_code == 201, resp.text
    return made.json()["subject"], token


def test_the_shipped_file_passes_nginx_t_as_it_is(tmp_path: Path) -> None:
    """``nginx -t`` on nginx.conf unchanged (its relative paths under a prefix with the
    files it names), and on the front's rendering of it."""
    for d in ("tls", "logs", "tmp", "modules", "extras"):
        (tmp_path / d).mkdir()
    from gateway.cli.front import certificate

    certificate(tmp_path / "tls")
    shutil.copy(ROOT / "front" / "real_ip.conf", tmp_path)
    shutil.copy(ROOT / "nginx.conf", tmp_path / "nginx.conf")
    (tmp_path / "sdk").symlink_to(ROOT / "sdk_js" / "dist")
    check = subprocess.run(
        [NGINX, "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
    rendered = render((ROOT / "nginx.conf").read_text(), 9443, [9001, 9002])
    assert "listen 9443 ssl http2;" in rendered
    assert "server 127.0.0.1:9001 " in rendered and "server 127.0.0.1:9002 " in rendered
    with pytest.raises(ValueError, match="2 gateway instances, not 3"):
        render((ROOT / "nginx.conf").read_text(), 9443, [1, 2, 3])


def test_tls_with_http2_and_hsts(front: Front) -> None:
    url = f"{front.url}/healthz"
    out = subprocess.run(
        ["curl", "-sk", "--http2", "-o", "/dev/null", "-D", "-", "-w", "%{http_version}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.endswith("2"), out  # curl's %{http_version}: HTTP/2
    assert "strict-transport-security: max-age=63072000" in out.lower()
    old = subprocess.run(
        ["curl", "-sk", "--tls-max", "1.1", "-o", "/dev/null", f"{front.url}/healthz"],
        capture_output=True,
    )
    assert old.returncode != 0  # TLS 1.0 and 1.1 are refused


def test_the_gateway_stores_the_connections_address_never_the_clients_claim(
    front: Front,
) -> None:
    with client(front) as c:
        _, token = app_subject(c, account_security=True)
        body = {"events": [{"event_id": f"front-{uuid.uuid4().hex[:12]}", "type": "app_open"}]}
        lied = {"X-Subject": token, "X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}
        resp = c.post("/v1/batch", json=body, headers=lied)
        assert resp.status_code == 202 and resp.json()["stored"] == 1, resp.text
        held = c.get("/v1/subject", headers={"X-Subject": token}).json()
    [part] = held["events"]["account_security"]
    assert part["ip"] == "127.0.0.1"


def test_the_sdk_files_are_served_by_nginx_with_their_caching(front: Front) -> None:
    manifest = (ROOT / "sdk_js" / "dist" / "manifest.json").read_text()
    hashed = json.loads(manifest)
    with client(front) as c:
        for name in hashed.values():
            resp = c.get(f"/{name}", headers={"Accept-Encoding": "gzip"})
            assert resp.status_code == 200, name
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert resp.content == (ROOT / "sdk_js" / "dist" / name).read_bytes()
        fixed = c.get("/sdk.js", headers={"Accept-Encoding": "gzip"})
        assert fixed.headers["Cache-Control"] == "public, max-age=300"
        assert fixed.headers["Content-Encoding"] == "gzip"
        assert "Strict-Transport-Security" in fixed.headers
        if BROTLI.is_file():  # Debian's module is installed by the test command
            br = c.get("/sdk.js", headers={"Accept-Encoding": "br"})
            assert br.headers["Content-Encoding"] == "br"
        page = c.get("/demo")
        assert page.status_code == 200
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        metrics = c.get("/metrics")
        assert metrics.status_code == 404 and metrics.json()["error"]["code"] == "not_found"


def test_bodies_over_the_gateways_limits_are_413_in_its_shape(front: Front) -> None:
    with client(front) as c:
        for path, size in (("/v1/consent", 9 * 1024), ("/v1/events", 65 * 1024)):
            resp = c.post(path, content=b"x" * size, headers={"Content-Type": "application/json"})
            assert resp.status_code == 413, path
            assert resp.headers["Content-Type"].startswith("application/json")
            assert resp.json()["error"]["code"] == "payload_too_large"
        batch = c.post(
            "/v1/batch", content=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "text/plain"}
        )
        assert batch.status_code == 413 and batch.json()["error"]["code"] == "payload_too_large"


def test_new_subjects_over_the_fronts_rate_are_429_in_the_gateways_shape(front: Front) -> None:
    """20 a minute, a burst of 10 (nginx.conf): the 11th at once is refused."""
    with client(front) as c:
        codes = [c.post("/v1/subjects").status_code for _ in range(14)]
        refused = c.post("/v1/subjects")
    assert codes.count(201) <= 11 and 429 in codes, codes
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "rate_limited"


def test_a_gateway_killed_while_requests_flow_loses_nothing_acknowledged() -> None:
    folder = run_dir()
    front = Front(folder, free_port(), env={"GATEWAY_RATE_LIMITS": "off"}).start()
    try:
        with client(front) as c:
            subjects = [app_subject(c, personalization=True)[1] for _ in range(4)]
        acknowledged: list[str] = []
        refused: list[int] = []
        stop = threading.Event()

        def send(token: str) -> None:
            with client(front) as c:
                while not stop.is_set():
                    eid = f"kill-{uuid.uuid4().hex[:16]}"
                    event = {"event_id": eid, "type": "search", "keyword": "轴承"}
                    body: dict[str, Any] = {"events": [event]}
                    try:
                        resp = c.post("/v1/batch", json=body, headers={"X-Subject": token})
                    except httpx.HTTPError:
                        refused.append(0)
                        continue
                    if resp.status_code == 202 and resp.json()["stored"] == 1:
                        acknowledged.append(eid)
                    else:
                        refused.append(resp.status_code)
                    time.sleep(0.1)  # 4 senders: 40 a second, under the front's 50 a second

        threads = [threading.Thread(target=send, args=(t,)) for t in subjects]
        for t in threads:
            t.start()
        time.sleep(1.5)
        before = len(acknowledged)
        front.kill_gateway(front.gateway_ports[0])  # kill -9, mid-flow
        time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join(30)
        after = len(acknowledged) - before
        assert before > 10 and after > 20, (before, after, refused[:20])  # the other one served
        assert all(code in (0, 502, 503) for code in refused), refused  # never a false 2xx
        r = redis.Redis.from_url(str(front.redis_url), decode_responses=True)
        stored = set()
        for key in r.scan_iter("*:ev:personalization"):
            for _, fields in r.xrange(key):
                stored.update(e["event_id"] for e in json.loads(fields["events"]))
        assert set(acknowledged) <= stored  # nothing acknowledged is lost
        r.close()
        # with no instance left, the front answers in the gateway's shape: 503, retry
        front.kill_gateway(front.gateway_ports[1])
        with client(front) as c:
            down = c.get("/p.gif")
        assert down.status_code == 503 and down.headers["Retry-After"] == "1"
        assert down.json()["error"]["code"] == "storage_unavailable"
    finally:
        front.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_front_command_stops_everything_it_started_on_sigterm() -> None:
    """What ./scripts/front runs once installed (``python -m gateway.cli.front``): it serves,
    and SIGTERM leaves no nginx, gateway or store behind."""
    folder = run_dir()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.front", "--port", str(port), "--run-dir", str(folder)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(proc.stdout.readline, b"")) if proc.stdout else None
    )
    reader.start()
    try:
        # serving once it says so (after nginx answered through it)
        deadline = time.monotonic() + 60
        while not any(b"the front: https://" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, lines
            time.sleep(0.2)
        assert httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False).status_code == 200
        started = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True)
        assert len(started.stdout.split()) == 2  # itself and nginx (-p <folder>)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        reader.join(10)
        out = b"".join(lines)
        assert proc.returncode == 0, out.decode()
        left = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True)
        assert left.stdout.split() == [], out.decode()
        # the gateways and the store it named are gone too
        said = re.search(r"gateways on (\d+), (\d+), store redis://127.0.0.1:(\d+)", out.decode())
        assert said is not None, out.decode()
        for p in said.groups():
            with socket.socket() as s, pytest.raises(OSError):
                s.connect(("127.0.0.1", int(p)))
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
