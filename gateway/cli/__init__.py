"""The command line, ``gateway`` (installed with the package) or ``python -m gateway``.

    gateway [--host 127.0.0.1] [--port 8000] [--workers N] [--threads 8] [--stop-timeout 10]
            [--dev]
    gateway retention
    gateway apikey create NAME [--scope SCOPE ...] | list | revoke DIGEST
    gateway export --purpose PURPOSE --recipient NAME --out FILE [--since TIME]

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
import logging
import sys
from pathlib import Path
from typing import Any

from ..core.apikeys import SCOPES
from ..core.config import from_env
from ..core.errors import ConfigError, InstanceTaken
from .commands import apikey, audiences, export, retention
from .serve import STOP_TIMEOUT, THREADS, WORKERS, serve

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

DESCRIPTION = (
    "Serve the consent gateway under granian. Without REDIS_URL it starts an embedded Valkey "
    "server keeping its data in the instance folder (GATEWAY_INSTANCE_PATH, default "
    "./instance); one gateway serves an instance folder at a time."
)
EPILOG = "Settings come from environment variables: see docs/configuration.md."


def _stop_timeout(text: str) -> int:
    """1 to 1800 seconds (granian takes 0 for no bound at all)."""
    seconds = int(text)
    if not 1 <= seconds <= 1800:
        raise argparse.ArgumentTypeError("from 1 to 1800 seconds")
    return seconds


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
        "--stop-timeout",
        type=_stop_timeout,
        metavar="S",
        default=default(STOP_TIMEOUT),
        help=f"seconds a worker has to finish its requests at a stop before it is killed "
        f"(default {STOP_TIMEOUT})",
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
        "%(prog)s [-h] [--host HOST] [--port PORT] [--workers N] [--threads N] "
        "[--stop-timeout S] [--dev]\n"
        "       %(prog)s retention\n"
        "       %(prog)s audiences {rebuild | run}\n"
        "       %(prog)s apikey {create NAME [--scope SCOPE] | list | revoke DIGEST}\n"
        "       %(prog)s export --purpose PURPOSE --recipient NAME --out FILE [--since TIME]"
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
    aud = commands.add_parser(
        "audiences",
        help="the marketers' audience index: rebuild it, or keep it current",
        description="rebuild: forget the audience index and make it again from the store "
        "(stop the gateways' indexers first: AUDIENCE_INDEXER=off, or wait for the lease); "
        "run: keep it current in the foreground. Uses REDIS_URL like retention.",
    )
    aud.add_argument("action", choices=("rebuild", "run"))
    aud.add_argument("--batch", type=int, default=2000, help="feed entries per round")
    aud.add_argument("--every", type=float, default=1.0, help="seconds between idle rounds")
    apikey = commands.add_parser(
        "apikey",
        help="create, list or revoke server API keys",
        description="Server API keys for the platform's senders and backend. Uses REDIS_URL, "
        "else the store of the gateway serving the instance folder, else starts the embedded "
        "one for the moment.",
    )
    actions = apikey.add_subparsers(dest="action", metavar="ACTION", title="actions")
    actions.required = True
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
    exporting = commands.add_parser(
        "export",
        help="write a pseudonymised Parquet file of one purpose's events for a recipient abroad",
        description="Write Apache Parquet of one purpose's events whose consent stands now, for a "
        "recipient named in EXPORT_RECIPIENTS (clause 3(2) item 4): people as pseudonyms of the "
        "recipient's own, times to the hour, never an address, a device's identity or a "
        "position, free text only where the recipient's settings allow it. Recorded in the "
        "audit log (GET /v1/exports). Exit status 2: an unknown recipient or purpose, or a bad "
        "argument; 3: the recipient would reach EXPORT_MAX_SUBJECTS_PER_YEAR people this year "
        "(nothing is written). Uses REDIS_URL like retention.",
        epilog=EPILOG,
    )
    exporting.add_argument("--purpose", required=True, help="the purpose whose events to export")
    exporting.add_argument("--recipient", required=True, help="a name in EXPORT_RECIPIENTS")
    exporting.add_argument(
        "--out", required=True, metavar="FILE", help="the Parquet file to write (a new one)"
    )
    exporting.add_argument(
        "--since",
        metavar="TIME",
        help="only events stored from this ISO 8601 date or time on (UTC unless it has an "
        "offset); default: all that retention kept",
    )
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
            return retention()
        if command == "apikey":
            return apikey(args)
        if command == "audiences":
            return audiences(args)
        if command == "export":
            return export(args)
        return serve(args)
    except InstanceTaken as e:
        print(f"{cli.prog}: {e}", file=sys.stderr)
        return 1
