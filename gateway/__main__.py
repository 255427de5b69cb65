"""``python -m gateway``: serve the gateway under granian, on the embedded store by default.

    python -m gateway [--host 127.0.0.1] [--port 8000] [--workers 2] [--threads 8] [--dev]
    python -m gateway retention      trim every purpose's events to its retention period
    python -m gateway apikey create NAME --scope senders [--scope saved_login]
    python -m gateway apikey list | apikey revoke DIGEST

Configuration comes from the environment (docs/configuration.md). Without ``REDIS_URL`` an
embedded Valkey server is started with its data in the instance folder and stopped on exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .config import ConfigError, from_env

# Request threads per worker. A request waits on Redis for a fraction of its time, so a few
# threads keep a worker busy; granian's WSGI default (half its backpressure, hundreds) only
# adds GIL contention: bench/bench_gateway.py measured 1.9 ms of CPU per beacon with it and
# 0.7 ms with 1 or 8 threads (docs/benchmarks.md).
THREADS = 8
INSTANCE = Path(os.environ.get("GATEWAY_INSTANCE_PATH", "instance")).resolve()
URL_FILE = INSTANCE / "valkey.url"  # the embedded store's address while the gateway serves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "retention", "apikey"]
    )
    parser.add_argument("args", nargs="*", help="apikey: create NAME | list | revoke DIGEST")
    parser.add_argument("--scope", action="append", default=[], help="apikey create: a scope")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 4)))
    parser.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help=f"request threads per worker (default {THREADS})",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="local development over plain HTTP: cookies without Secure",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    try:
        from_env()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2

    if args.command == "retention":
        return _retention()
    if args.command == "apikey":
        return _apikey(args.args, args.scope)

    server = None
    if not os.environ.get("REDIS_URL"):
        from .embedded import start

        server = start(INSTANCE)
        os.environ["REDIS_URL"] = server.connection_url
        URL_FILE.write_text(server.connection_url + "\n")  # for `apikey` while serving
    os.environ.setdefault("GATEWAY_INSTANCE_PATH", str(INSTANCE))
    if args.dev:
        os.environ.setdefault("GATEWAY_COOKIE_SECURE", "false")
    # Fail here, in one process, rather than in every worker.
    from .wsgi import make_app

    make_app()
    try:
        from granian.constants import Interfaces
        from granian.server import Server

        Server(
            "gateway.wsgi:make_app",
            address=args.host,
            port=args.port,
            interface=Interfaces.WSGI,
            workers=args.workers,
            blocking_threads=args.threads,
            factory=True,
        ).serve()
    finally:
        if server is not None:
            URL_FILE.unlink(missing_ok=True)
            server.stop()
    return 0


def _apikey(words: list[str], scopes: list[str]) -> int:
    """Create, list or revoke server API keys; a created key is printed once, never stored."""
    from .apikeys import ApiKeys
    from .store import connect

    server = None
    url = os.environ.get("REDIS_URL")
    if not url and URL_FILE.exists():
        url = URL_FILE.read_text().strip()  # the embedded store of a running gateway
    if not url:
        from .embedded import start

        server = start(INSTANCE)
        url = server.connection_url
    from redis.exceptions import RedisError

    client = connect(url)
    keys = ApiKeys(client)
    try:
        client.ping()
    except RedisError as e:
        print(f"apikey: no store answers at {url} ({e}); set REDIS_URL", file=sys.stderr)
        if server is None and not os.environ.get("REDIS_URL"):
            print(f"(or remove {URL_FILE} if no gateway is running)", file=sys.stderr)
        client.close()
        return 1
    try:
        if words[:1] == ["create"] and len(words) == 2:
            print(keys.create(words[1], scopes or ["senders"]))
            print("(shown once: the gateway keeps only its SHA-256)", file=sys.stderr)
        elif words == ["list"]:
            for row in keys.list():
                print(f"{row['digest']}  {row['name']}  scopes={row['scopes']}  {row['created']}")
        elif words[:1] == ["revoke"] and len(words) == 2:
            n = keys.revoke(words[1])
            print(f"{n} key(s) revoked")
            return 0 if n else 1
        else:
            print("usage: apikey create NAME [--scope S] | list | revoke DIGEST", file=sys.stderr)
            return 2
    except ValueError as e:
        print(f"apikey: {e}", file=sys.stderr)
        return 2
    finally:
        client.close()
        if server is not None:
            server.stop()
    return 0


def _retention() -> int:
    from . import retention
    from .wsgi import make_app

    if not os.environ.get("REDIS_URL"):
        print("retention needs REDIS_URL (the server the gateway stores in)", file=sys.stderr)
        return 2
    from redis.exceptions import RedisError

    svc = make_app().extensions["gateway"]
    try:
        removed = retention.apply(svc.store, svc.catalogue)
    except RedisError as e:
        print(f"storage unavailable: {e}", file=sys.stderr)
        return 1
    for purpose, n in removed.items():
        print(f"{purpose}: {n} event parts past retention removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
