"""``python -m gateway`` on a fresh instance folder: embedded Valkey, real HTTP, clean exit.

The helpers here (``start``, ``stop``, ``gateway_env``...) serve the other command-line tests
too: test_cli.py, test_readme.py, test_wheel.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_env(**over: str) -> dict[str, str]:
    """The environment a person starts the gateway in: no store, no gateway settings."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("GATEWAY_")}
    env.update(over)
    return env


def wait_healthy(proc: subprocess.Popen[bytes], port: int, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    out = proc.stdout.read().decode() if proc.stdout else ""
    raise AssertionError(f"gateway did not come up:\n{out}")


def start(
    instance: Path,
    port: int,
    *,
    command: Sequence[str] | None = None,
    cwd: Path = ROOT,
    dev: bool = True,
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """A gateway process (``python -m gateway`` unless ``command``), serving once returned."""
    args = [*(command or [sys.executable, "-m", "gateway"]), "--port", str(port)]
    args += ["--workers", "1", *(["--dev"] if dev else []), *extra]
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=gateway_env(GATEWAY_INSTANCE_PATH=str(instance)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_healthy(proc, port)
    return proc


# granian's line when a worker missed the stop and was killed after --stop-timeout
# (granian#900; gateway/cli/serve.py). The gateway's stop is bounded by it, which
# test_a_worker_that_misses_the_stop_is_killed_within_the_timeout proves; the other tests
# read the output without it, as that upstream race strikes about one stop in fifty.
KILLED = "after it refused to gracefully stop"


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return "".join(line for line in out.decode().splitlines(True) if KILLED not in line)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "instance"


def valkey_running(instance: Path) -> bool:
    out = subprocess.run(["pgrep", "-f", str(instance / "valkey")], capture_output=True)
    return out.returncode == 0


def test_one_command_runs_everything_and_keeps_data(instance: Path) -> None:
    port = free_port()
    proc = start(instance, port)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base) as c:
            policy = c.get("/v1/policy").json()
            resp = c.post(
                "/v1/consent",
                json={"policy_version": policy["version"], "purposes": {"personalization": True}},
            )
            assert resp.status_code == 201
            vid = resp.cookies["_vid"]
            ev = {"event_id": "run-test-0001", "type": "search", "keyword": "轴承"}
            stored = c.post("/v1/events", json=ev).json()
            assert stored["stored"] == 1
            health = c.get("/healthz").json()
            assert health["consent_durability"] == "waitaof"  # AOF on, fsync confirmed
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert (instance / "valkey" / "appendonlydir").is_dir()
    assert (instance / "secret_key").is_file()
    assert not valkey_running(instance), "the embedded server must stop with the gateway"
    assert (instance / "gateway.lock").read_text() == "", "the lock's record is emptied on exit"

    # a restart finds the same data and honours the same cookie
    proc = start(instance, port)
    try:
        with httpx.Client(base_url=base, cookies={"_vid": vid}) as c:
            subject = c.get("/v1/subject").json()
            assert subject["events"]["personalization"][0]["keyword"] == "轴承"
            assert subject["consent"]["purposes"]["personalization"]["granted"] is True
    finally:
        stop(proc)


def test_a_dev_start_says_only_routine_things_and_serves_a_landing_page(instance: Path) -> None:
    port = free_port()
    proc = start(instance, port)
    try:
        with httpx.Client(base_url=f"http://localhost:{port}") as c:
            page = c.get("/")
            english = c.get("/?lang=en").text
    finally:
        out = stop(proc)
    # A first start in development: a new store, generated keys: all routine.
    assert "embedded Valkey on redis://127.0.0.1:" in out
    assert "GATEWAY_SECRET_KEYS not set: generated a key" in out
    assert "generated a development receipt key" in out
    assert f"open http://localhost:{port}/" in out
    assert f"Listening at: http://127.0.0.1:{port}" in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert not [line for line in lines if "WARNING" in line or "[WARN" in line], out
    assert "Websockets" not in out and "threads" not in out, out  # granian's start-up noise
    assert all(" INFO " in line for line in lines), out  # one format, granian's lines too

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "同意网关" in page.text
    for path in ("/demo", "/v1/policy", "/healthz", "/metrics", "/v1/subject"):
        assert f'href="{path}' in page.text, path
    assert "docs/protocol.md" in page.text
    assert "Consent gateway" in english and 'href="/demo?lang=en"' in english


def test_without_dev_the_root_is_a_404_and_the_generated_keys_are_warnings(
    instance: Path,
) -> None:
    port = free_port()
    proc = start(instance, port, dev=False)
    try:
        root = httpx.get(f"http://127.0.0.1:{port}/")
    finally:
        out = stop(proc)
    assert root.status_code == 404 and root.json()["error"]["code"] == "not_found"
    warnings = [line for line in out.splitlines() if "WARNING" in line]
    assert len(warnings) == 2, out  # the generated secret and receipt keys need action here
    assert "GATEWAY_SECRET_KEYS" in warnings[0] + warnings[1]
    assert "GATEWAY_RECEIPT_KEYS" in warnings[0] + warnings[1]


def test_a_worker_that_misses_the_stop_is_killed_within_the_timeout(instance: Path) -> None:
    """A frozen worker (SIGSTOP: it cannot see the stop, as a worker that lost granian's
    wake-up does not) is killed after ``--stop-timeout``; the gateway and its store stop."""
    port = free_port()
    proc = start(instance, port, extra=["--stop-timeout", "2"])
    workers = subprocess.run(
        ["pgrep", "-P", str(proc.pid), "-f", "gateway"], capture_output=True, text=True
    ).stdout.split()
    assert len(workers) == 1, workers  # --workers 1; the store is valkey-server, not matched
    os.kill(int(workers[0]), signal.SIGSTOP)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    took = time.monotonic() - began
    assert 2 <= took < 10, (took, out.decode())
    assert KILLED in out.decode()
    assert proc.returncode == 0, out.decode()
    assert not valkey_running(instance), "the embedded server must stop with the gateway"
    assert (instance / "gateway.lock").read_text() == ""
