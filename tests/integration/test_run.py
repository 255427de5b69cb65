"""``python -m gateway`` on a fresh instance folder: embedded Valkey, real HTTP, clean exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(instance: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("GATEWAY_")}
    env["GATEWAY_INSTANCE_PATH"] = str(instance)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--port", str(port), "--workers", "1", "--dev"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    out = proc.stdout.read().decode() if proc.stdout else ""
    raise AssertionError(f"gateway did not come up:\n{out}")


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return out.decode()


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

    # a restart finds the same data and honours the same cookie
    proc = start(instance, port)
    try:
        with httpx.Client(base_url=base, cookies={"_vid": vid}) as c:
            subject = c.get("/v1/subject").json()
            assert subject["events"]["personalization"][0]["keyword"] == "轴承"
            assert subject["consent"]["purposes"]["personalization"]["granted"] is True
    finally:
        stop(proc)
