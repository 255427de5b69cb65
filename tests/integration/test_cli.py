"""The command line: its help, one gateway per instance folder, ``apikey`` against the store of
the gateway that runs (or of none), and what a gateway killed outright leaves behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from gateway.cli.lock import InstanceLock

from .test_run import ROOT, free_port, gateway_env, start, stop, valkey_running, wait_healthy

CONTACT = "/v1/senders/contact?subject=" + "0" * 32 + "&channel=email"


def cli(instance: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        env=gateway_env(GATEWAY_INSTANCE_PATH=str(instance)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_help_tells_every_option_and_command(tmp_path: Path) -> None:
    top = cli(tmp_path, "--help")
    assert top.returncode == 0
    assert "``" not in top.stdout
    for option, words in [
        ("--host", "address to listen on"),
        ("--port", "port to listen on"),
        ("--workers", "worker processes"),
        ("--threads", "request threads per worker"),
        ("--dev", "cookies without Secure"),
    ]:
        line = next(line for line in top.stdout.splitlines() if line.strip().startswith(option))
        assert words in line + top.stdout, option
    for command in ("serve", "retention", "apikey"):
        assert f"    {command} " in top.stdout, command
    apikey = cli(tmp_path, "apikey", "--help").stdout
    assert all(f"    {a} " in apikey for a in ("create", "list", "revoke"))
    create = cli(tmp_path, "apikey", "create", "--help").stdout
    assert "senders,saved_login,erasure" in create and "``" not in create
    assert cli(tmp_path, "serve", "--help").stdout.count("--workers N") >= 2
    assert cli(tmp_path, "apikey").returncode == 2  # an action is required


def test_one_gateway_per_instance_folder_and_apikey_uses_its_store(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    port = free_port()
    first = start(instance, port)
    try:
        began = time.monotonic()
        second = cli(instance, "--port", str(free_port()), "--dev", timeout=30)
        assert time.monotonic() - began < 15  # at once: no store started, nothing served
        assert second.returncode == 1
        said = second.stderr
        assert "another gateway already serves the instance folder" in said, said
        assert f"pid {first.pid}" in said and f"http://127.0.0.1:{port}" in said, said
        assert "Traceback" not in said
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200

        made = cli(instance, "apikey", "create", "mailer", "--scope", "senders")
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        # the running gateway knows the key at once: it was made in its own store
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"http://127.0.0.1:{port}{CONTACT}", headers=auth).status_code == 200
        assert "mailer" in cli(instance, "apikey", "list").stdout
    finally:
        out = stop(first)
    assert first.returncode == 0, out
    assert not valkey_running(instance)

    # no gateway: apikey starts the folder's store for the moment, and stops it again
    listed = cli(instance, "apikey", "list")
    assert listed.returncode == 0 and "mailer" in listed.stdout, listed.stderr
    assert not valkey_running(instance)
    digest = listed.stdout.split()[0]
    assert cli(instance, "apikey", "revoke", digest).stdout.strip() == "1 key(s) revoked"

    # and the gateway then finds the same store: the key is gone
    proc = start(instance, port)
    try:
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"http://127.0.0.1:{port}{CONTACT}", headers=auth).status_code == 401
    finally:
        stop(proc)


def test_apikey_refuses_a_gateway_whose_store_it_cannot_know(
    tmp_path: Path, redis_url: str
) -> None:
    instance = tmp_path / "instance"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--port", str(port), "--workers", "1", "--dev"],
        cwd=ROOT,
        env=gateway_env(GATEWAY_INSTANCE_PATH=str(instance), REDIS_URL=redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(proc, port)
        refused = cli(instance, "apikey", "list")
        assert refused.returncode == 1
        assert "REDIS_URL" in refused.stderr and str(proc.pid) in refused.stderr
    finally:
        stop(proc)


def test_a_start_waits_for_a_command_holding_the_folder(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    lock = InstanceLock(instance)
    assert lock.try_acquire()
    lock.record(pid=os.getpid(), role="apikey create", started="now")
    port = free_port()
    released = threading.Timer(2.0, lock.release)
    released.start()
    began = time.monotonic()
    try:
        proc = start(instance, port)
    finally:
        released.join()
    try:
        assert time.monotonic() - began >= 2.0  # it waited for the command to finish
    finally:
        out = stop(proc)
    assert "waiting for `apikey create`" in out, out


def test_a_gateway_killed_outright_is_named_then_its_store_is_stopped(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    port = free_port()
    first = start(instance, port)
    made = cli(instance, "apikey", "create", "kept", "--scope", "senders")
    key = made.stdout.strip()
    left = children(first.pid)  # its worker and its Valkey server
    assert len(left) == 2
    try:
        first.kill()  # SIGKILL: no cleanup at all
        first.wait(10)
        assert all(alive(pid) for pid in left)
        workers = [pid for pid in left if "valkey" not in Path(f"/proc/{pid}/cmdline").read_text()]
        store = [pid for pid in left if pid not in workers]
        # its worker still serves, and still holds the folder: named, not overrun
        refused = cli(instance, "--port", str(free_port()), timeout=30)
        assert refused.returncode == 1
        assert f"pid {first.pid} has ended" in refused.stderr, refused.stderr
        assert str(workers[0]) in refused.stderr
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)

        # the next start shuts the orphaned store down before opening its files again
        proc = start(instance, port)
        try:
            assert not alive(store[0])
            auth = {"Authorization": f"Bearer {key}"}
            assert httpx.get(f"http://127.0.0.1:{port}{CONTACT}", headers=auth).status_code == 200
        finally:
            out = stop(proc)
        assert "was left running: shutting it down" in out, out
    finally:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not valkey_running(instance)


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = cli(instance, "--port", str(port), "--dev", timeout=30)
    assert refused.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (instance / "valkey").exists()  # no store was started for nothing
