"""The command line, ``gateway`` (installed with the package) or ``python -m gateway``.

    gateway [--host 127.0.0.1] [--port 8000] [--workers N] [--threads 8] [--dev]
    gateway retention
    gateway apikey create NAME [--scope senders] [--scope saved_login] | list | revoke DIGEST

Configuration comes from the environment (docs/configuration.md). Without ``REDIS_URL`` an
embedded Valkey server is started with its data in the instance folder and stopped on exit.

One gateway per instance folder: it holds an ``flock`` on ``<instance>/gateway.lock`` for its
whole life (the kernel releases it however the process ends), and writes there who holds it:
pid, address, the embedded store's URL. A second start finds the lock taken and exits at once
naming the first. ``apikey`` and ``retention`` use the running gateway's store, or, when none
runs, take the lock themselves for the moment they need the embedded store (a gateway starting
meanwhile waits for them). A store left running by a gateway killed outright is found through
the same file at the next start, and shut down before a new one opens its files.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import ConfigError, from_env

# Request threads per worker. A request waits on Redis for a fraction of its time, so a few
# threads keep a worker busy; granian's WSGI default (half its backpressure, hundreds) only
# adds GIL contention: bench/bench_gateway.py measured 1.9 ms of CPU per beacon with it and
# 0.7 ms with 1 or 8 threads (docs/benchmarks.md).
THREADS = 8
WORKERS = max(1, min(os.cpu_count() or 1, 4))
INSTANCE = Path(os.environ.get("GATEWAY_INSTANCE_PATH", "instance")).resolve()
LOCK_NAME = "gateway.lock"
WAIT_S = 30.0  # how long a start waits for an apikey or retention command to finish
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("gateway.main")

DESCRIPTION = (
    "Serve the consent gateway under granian. Without REDIS_URL it starts an embedded Valkey "
    "server keeping its data in the instance folder (GATEWAY_INSTANCE_PATH, default "
    "./instance); one gateway serves an instance folder at a time."
)
EPILOG = "Settings come from environment variables: see docs/configuration.md."


def _serve_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The serving options, on the top level (``gateway --port 9000``) and on ``serve``."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--host",
        default=default("127.0.0.1"),
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port", type=int, default=default(8000), help="port to listen on (default 8000)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=default(WORKERS),
        help=f"worker processes (default: the cores, at most 4; here {WORKERS})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        default=default(THREADS),
        help=f"request threads per worker (default {THREADS})",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        default=default(False),
        help="local development over plain HTTP: cookies without Secure, a landing page at /, "
        "the demo's login",
    )


def parser() -> argparse.ArgumentParser:
    prog = "gateway" if Path(sys.argv[0]).name == "gateway" else "python -m gateway"
    usage = (
        "%(prog)s [-h] [--host HOST] [--port PORT] [--workers N] [--threads N] [--dev]\n"
        "       %(prog)s retention\n"
        "       %(prog)s apikey {create NAME [--scope SCOPE] | list | revoke DIGEST}"
    )
    top = argparse.ArgumentParser(prog=prog, usage=usage, description=DESCRIPTION, epilog=EPILOG)
    _serve_options(top, defaults=True)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    serve = commands.add_parser(
        "serve", help="serve the gateway (the default)", description=DESCRIPTION, epilog=EPILOG
    )
    _serve_options(serve, defaults=False)
    commands.add_parser(
        "retention",
        help="trim every purpose's events to its retention period (run it daily)",
        description="Trim every purpose's events to its retention period; run it daily, e.g. "
        "from cron. Uses REDIS_URL, else the store of the gateway serving the instance folder, "
        "else starts the embedded one for the moment.",
    )
    apikey = commands.add_parser(
        "apikey",
        help="create, list or revoke server API keys",
        description="Server API keys for the platform's senders and backend. Uses REDIS_URL, "
        "else the store of the gateway serving the instance folder, else starts the embedded "
        "one for the moment.",
    )
    actions = apikey.add_subparsers(dest="action", metavar="ACTION", title="actions")
    actions.required = True
    from .apikeys import SCOPES

    create = actions.add_parser(
        "create", help="make a key and print it (once: only its hash is kept)"
    )
    create.add_argument("name", help="who uses the key, e.g. newsletter")
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="what the key may do; repeat for several (default: senders)",
    )
    actions.add_parser("list", help="list the keys: digest, name, scopes, created")
    revoke = actions.add_parser("revoke", help="revoke a key by its digest (from list)")
    revoke.add_argument("digest")
    return top


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    command = args.command or "serve"
    level = logging.INFO if command == "serve" else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT)
    try:
        from_env()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    try:
        if command == "retention":
            return _retention()
        if command == "apikey":
            return _apikey(args)
        return _serve(args)
    except Refused as e:
        print(f"{cli.prog}: {e}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------- the instance lock
class Refused(Exception):
    """The instance folder is taken, or its gateway's store cannot be reached from here."""


class InstanceLock:
    """An ``flock`` on ``<instance>/gateway.lock``, and what its holder wrote there.

    The file is never deleted (deleting a lock file lets two processes lock two different
    files of one name): its holder empties it when it ends.
    """

    def __init__(self, instance: Path) -> None:
        instance.mkdir(parents=True, exist_ok=True)
        self.path = instance / LOCK_NAME
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False
        self.previous: dict[str, Any] = {}  # what the last holder left, read when acquired

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.held = True
        self.previous = self.holder()
        os.ftruncate(self.fd, 0)
        return True

    def holder(self) -> dict[str, Any]:
        """What the holder wrote (empty while it writes, or when nobody holds the lock)."""
        try:
            return json.loads(os.pread(self.fd, 65536, 0) or b"{}")
        except ValueError:
            return {}

    def record(self, **info: Any) -> None:
        """Add to the holder's record (only the holder writes)."""
        data = json.dumps(self.holder() | info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.held:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.held = False
        os.close(self.fd)

    def acquire(self, role: str) -> None:
        """Take the lock for ``role``: wait while a short command holds it, else refuse."""
        deadline = time.monotonic() + WAIT_S
        told = False
        while not self.try_acquire():
            who = self._wait_for_holder()
            if who.get("role") == "gateway" or time.monotonic() > deadline:
                self.release()
                raise Refused(self.taken(who))
            if not told:
                said = f"waiting for `{who.get('role')}` (pid {who.get('pid')}) to finish"
                print(said, file=sys.stderr)
                told = True
            time.sleep(0.1)
        self.record(pid=os.getpid(), role=role, started=_now())

    def _wait_for_holder(self) -> dict[str, Any]:
        """The holder's record; it may be writing it this very moment."""
        for _ in range(20):
            who = self.holder()
            if who:
                return who
            time.sleep(0.05)
        return {}

    def taken(self, who: dict[str, Any]) -> str:
        role = who.get("role", "gateway")
        what = "another gateway already serves" if role == "gateway" else f"`{role}` holds"
        pid = who.get("pid", "?")
        where = f", {who['url']}" if who.get("url") else ""
        since = f", since {who['started']}" if who.get("started") else ""
        text = f"{what} the instance folder {self.path.parent} (pid {pid}{where}{since})"
        holders = [p for p in _pids_holding(self.path) if p != os.getpid()]
        if isinstance(pid, int) and not _alive(pid) and holders:
            them = ", ".join(map(str, holders))
            return (
                f"{text}; pid {pid} has ended, but processes it started ({them}) still hold "
                "the folder. Stop them first."
            )
        return (
            f"{text}. Stop it first, or give this one another folder (GATEWAY_INSTANCE_PATH)."
        )


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pids_holding(path: Path) -> list[int]:
    """The processes with ``path`` open (Linux's /proc; empty elsewhere): a gateway's
    workers outlive a main process killed outright, and keep serving."""
    found = []
    target = str(path)
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
    return sorted(found)


def _stop_leftover_store(lock: InstanceLock, data: Path) -> None:
    """A store the last holder started and never stopped (it was killed outright) would
    write the same files as the one about to start: shut it down first."""
    url = lock.previous.get("store")
    if not url or lock.previous.get("store_kind") != "embedded":
        return
    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=0.5, socket_timeout=5, decode_responses=True
    )
    try:
        found = client.config_get("dir").get("dir", "")
        if Path(found).resolve() != data.resolve():
            return  # another server took that port since
        log.warning(
            "the embedded store of pid %s (%s) was left running: shutting it down",
            lock.previous.get("pid"),
            url,
        )
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client.ping()
            time.sleep(0.1)
    except redis.RedisError:
        return  # gone (or never there): nothing to stop
    finally:
        client.close()
    raise Refused(f"the store left running at {url} (data in {data}) does not stop: stop it first")


def _start_store(lock: InstanceLock) -> Any:
    from .embedded import start

    _stop_leftover_store(lock, INSTANCE / "valkey")
    server = start(INSTANCE)
    lock.record(store=server.connection_url, store_kind="embedded")
    return server


# ------------------------------------------------------------------------------ serving
class _DeliberateThreads(logging.Filter):
    """granian warns when a WSGI worker may run more than 2 x cores + 1 threads, whatever the
    threads do. Ours mostly wait on the store, and their number was measured (``THREADS``):
    that one warning is left out, every other granian message is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(
            f"Configuration allows spawning up to {THREADS} Python threads"
        )


# granian's log lines in the gateway's format, on the same stream (its access log unchanged).
GRANIAN_LOGGING = {
    "formatters": {
        "generic": {
            "()": "logging.Formatter",
            "fmt": "%(asctime)s %(levelname)s granian: %(message)s",
        },
        "access": {"()": "logging.Formatter", "fmt": "%(message)s"},
    },
    "handlers": {
        "console": {
            "formatter": "generic",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
}


def _check_address(host: str, port: int) -> None:
    """Refuse an address another program listens on before starting anything (granian
    would fail on it only after the store started, with a backtrace)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            probe.bind(address)
    except OSError as e:
        raise Refused(f"cannot listen on {host}:{port}: {e.strerror or e} (--host, --port)") from e


def _serve(args: argparse.Namespace) -> int:
    # Until granian takes over SIGTERM, a stop during the start still stops the store.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    lock = InstanceLock(INSTANCE)
    lock.acquire("gateway")
    server = None
    try:
        _check_address(args.host, args.port)
        external = bool(os.environ.get("REDIS_URL"))
        lock.record(
            url=f"http://{args.host}:{args.port}",
            store_kind="external" if external else "embedded",
        )
        if not external:
            server = _start_store(lock)
            os.environ["REDIS_URL"] = server.connection_url
        os.environ.setdefault("GATEWAY_INSTANCE_PATH", str(INSTANCE))
        if args.dev:
            os.environ["GATEWAY_DEV"] = "true"
            os.environ.setdefault("GATEWAY_COOKIE_SECURE", "false")
        # Fail here, in one process, rather than in every worker.
        from .wsgi import make_app

        make_app()
        from granian.constants import Interfaces
        from granian.server import Server

        granian = Server(
            "gateway.wsgi:make_app",
            address=args.host,
            port=args.port,
            interface=Interfaces.WSGI,
            workers=args.workers,
            blocking_threads=args.threads,
            websockets=False,  # WSGI has none: granian would say so at every start
            factory=True,
            log_dictconfig=GRANIAN_LOGGING,
        )
        if args.threads == THREADS:
            logging.getLogger("_granian").addFilter(_DeliberateThreads())
        if args.dev:
            shown = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::") else args.host
            log.info(
                "development mode: open http://%s:%d/ (cookies without Secure)", shown, args.port
            )
        granian.serve()
    finally:
        if server is not None:
            server.stop()
        lock.release()
    return 0


# --------------------------------------------------------------- commands on the store
@contextlib.contextmanager
def _store_url(role: str) -> Iterator[str]:
    """``REDIS_URL``; else the store of the gateway serving the instance folder; else the
    embedded store, started for the command under the instance lock."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    lock = InstanceLock(INSTANCE)
    try:
        deadline = time.monotonic() + WAIT_S
        while not lock.try_acquire():
            who = lock._wait_for_holder()
            if who.get("role") == "gateway":
                if who.get("store_kind") == "external":
                    raise Refused(
                        f"the gateway serving {INSTANCE} (pid {who.get('pid')}) stores in the "
                        "server of its REDIS_URL: run this command with the same REDIS_URL"
                    )
                if who.get("store"):
                    yield who["store"]
                    return
            if time.monotonic() > deadline:
                raise Refused(lock.taken(who))
            time.sleep(0.1)  # a gateway starting its store, or another command
        lock.record(pid=os.getpid(), role=role, started=_now())
        server = _start_store(lock)
        try:
            yield server.connection_url
        finally:
            server.stop()
    finally:
        lock.release()


def _apikey(args: argparse.Namespace) -> int:
    """Create, list or revoke server API keys; a created key is printed once, never stored."""
    from redis.exceptions import RedisError

    from .apikeys import ApiKeys
    from .store import connect

    with _store_url(f"apikey {args.action}") as url:
        client = connect(url)
        try:
            client.ping()
            keys = ApiKeys(client)
            if args.action == "create":
                print(keys.create(args.name, args.scope or ["senders"]))
                print("(shown once: the gateway keeps only its SHA-256)", file=sys.stderr)
            elif args.action == "list":
                for row in keys.list():
                    print(
                        f"{row['digest']}  {row['name']}  scopes={row['scopes']}  {row['created']}"
                    )
            else:
                n = keys.revoke(args.digest)
                print(f"{n} key(s) revoked")
                return 0 if n else 1
        except RedisError as e:
            print(f"apikey: the store at {url} does not answer ({e})", file=sys.stderr)
            return 1
        except ValueError as e:
            print(f"apikey: {e}", file=sys.stderr)
            return 2
        finally:
            client.close()
    return 0


def _retention() -> int:
    from redis.exceptions import RedisError

    from . import retention
    from .wsgi import make_app

    with _store_url("retention") as url:
        os.environ["REDIS_URL"] = url
        os.environ.setdefault("GATEWAY_INSTANCE_PATH", str(INSTANCE))
        app = make_app()
        svc = app.extensions["gateway"]
        try:
            removed = retention.apply(svc.store, svc.catalogue)
        except RedisError as e:
            print(f"storage unavailable: {e}", file=sys.stderr)
            return 1
        finally:
            for close in svc.closers:
                close()
    for purpose, n in removed.items():
        print(f"{purpose}: {n} event parts past retention removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
