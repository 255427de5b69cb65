"""``gateway`` (``serve``): the gateway under granian, on the embedded store by default."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

from ..core.errors import InstanceTaken
from .lock import INSTANCE, InstanceLock, start_store

# Request threads per worker. A request waits on Redis for a fraction of its time, so a few
# threads keep a worker busy; granian's WSGI default (half its backpressure, hundreds) only
# adds GIL contention: bench/bench_gateway.py measured 1.9 ms of CPU per beacon with it and
# 0.7 ms with 1 or 8 threads (docs/benchmarks.md).
THREADS = 8
WORKERS = max(1, min(os.cpu_count() or 1, 4))
# Seconds a worker has to finish its requests once told to stop, before it is killed. Without
# a bound granian waits for ever, and its worker sometimes misses the stop: its Rust side can
# lose the wake-up (emmett-framework/granian#900, fixed upstream after 2.8.9); here 2 of 101
# gateways stopped under load hung so, the worker idle in its final wait. Writes are one
# atomic script each, answered after it: a request cut short was not acknowledged. Only a
# long read can be cut mid-answer (a senders' suppression list streamed past the bound), and
# its reader sees the list unfinished (no end line with end=1, broken framing without).
STOP_TIMEOUT = 10

log = logging.getLogger("gateway.main")

DESCRIPTION = (
    "Serve the consent gateway under granian. Without REDIS_URL it starts an embedded Valkey "
    "server keeping its data in the instance folder (GATEWAY_INSTANCE_PATH, default "
    "./instance); one gateway serves an instance folder at a time."
)
EPILOG = "Settings come from environment variables: see docs/configuration.md."


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
        raise InstanceTaken(
            f"cannot listen on {host}:{port}: {e.strerror or e} (--host, --port)"
        ) from e


def serve(args: argparse.Namespace) -> int:
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
            server = start_store(lock)
            os.environ["REDIS_URL"] = server.connection_url
        os.environ.setdefault("GATEWAY_INSTANCE_PATH", str(INSTANCE))
        if args.dev:
            os.environ["GATEWAY_DEV"] = "true"
            os.environ.setdefault("GATEWAY_COOKIE_SECURE", "false")
        # Fail here, in one process, rather than in every worker.
        from ..wsgi import make_app

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
            workers_kill_timeout=args.stop_timeout,
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
