"""``gateway apikey ...`` and ``gateway retention``: commands on the store of the instance
folder's gateway (or of ``REDIS_URL``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from ..core.errors import InstanceTaken, StorageUnavailable
from ..storage.client import shown
from .lock import INSTANCE, WAIT_S, InstanceLock, now, start_store


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
            who = lock.wait_for_holder()
            if who.get("role") == "gateway":
                if who.get("store_kind") == "external":
                    raise InstanceTaken(
                        f"the gateway serving {INSTANCE} (pid {who.get('pid')}) stores in the "
                        "server of its REDIS_URL: run this command with the same REDIS_URL"
                    )
                if who.get("store"):
                    yield who["store"]
                    return
            if time.monotonic() > deadline:
                raise InstanceTaken(lock.taken(who))
            time.sleep(0.1)  # a gateway starting its store, or another command
        lock.record(pid=os.getpid(), role=role, started=now())
        server = start_store(lock)
        try:
            yield server.connection_url
        finally:
            server.stop()
    finally:
        lock.release()


def _storage(url: str) -> tuple[Any, Any]:
    """The store at ``url`` and the catalogue, as the gateway opens them."""
    from ..core.catalogue import load
    from ..core.config import DEFAULTS, from_env
    from ..core.records import Lifetimes
    from ..storage import open_storage

    cfg = DEFAULTS | from_env() | {"REDIS_URL": url}
    day = 86_400_000
    lifetimes = Lifetimes(day, day, day, day)  # (these commands write no subject)
    cat = load(cfg.get("CATALOGUE_PATH"))
    activity = cat.audiences.activity if cat.audiences else ()
    return open_storage(cfg, lifetimes=lifetimes, limits=None, activity=activity), cat


def apikey(args: argparse.Namespace) -> int:
    """Create, list or revoke server API keys; a created key is printed once, never stored."""
    from ..core.apikeys import ApiKeys

    with _store_url(f"apikey {args.action}") as url:
        store, _ = _storage(url)
        try:
            keys = ApiKeys(store.apikeys)
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
        except StorageUnavailable as e:
            print(
                f"apikey: the store at {shown(url)} does not answer ({e.__cause__})",
                file=sys.stderr,
            )
            return 1
        except ValueError as e:
            print(f"apikey: {e}", file=sys.stderr)
            return 2
        finally:
            store.close()
    return 0


def retention() -> int:
    """Trim every purpose's events to its retention period."""
    from ..core import retention as trim

    with _store_url("retention") as url:
        store, cat = _storage(url)
        try:
            done = trim.run(store, cat, 0, force=True)  # recorded, as the gateways' runs are
        except StorageUnavailable as e:
            print(f"storage unavailable: {e.__cause__}", file=sys.stderr)
            return 1
        finally:
            store.close()
    if done is None:  # forced, it runs unless a gateway is running it at this moment
        print("retention: a gateway is running it now; try again in a minute", file=sys.stderr)
        return 1
    for purpose, n in done.removed.items():
        print(f"{purpose}: {n} stream entries past retention removed")
    return 0


def audiences(args: argparse.Namespace) -> int:
    """``rebuild``: the audience index made again from the store; ``run``: keep it current
    in the foreground (where no gateway does, ``AUDIENCE_INDEXER=off``), until stopped."""
    from ..core.audiences.indexer import Indexer

    with _store_url(f"audiences {args.action}") as url:
        store, cat = _storage(url)
        try:
            if cat.audiences is None:
                print("audiences: the catalogue has no [audiences] section", file=sys.stderr)
                return 2
            min_grant = {p: i + 1 for p, i in cat.last_change.items()}
            indexer = Indexer(
                store.audiences, store, store.accounts, cat, min_grant, batch=args.batch
            )
            if args.action == "rebuild":
                n = indexer.rebuild()
                indexer.close()  # the gateways' indexers take over at once
                print(f"audience index rebuilt: {n} feed entries read")
                return 0
            print("audience indexer running (Ctrl-C stops it)", file=sys.stderr, flush=True)
            while True:
                if indexer.step() == 0:
                    time.sleep(args.every)
        except KeyboardInterrupt:
            indexer.close()  # another takes over at once
            return 0
        except RuntimeError as e:
            print(f"audiences: {e}", file=sys.stderr)
            return 1
        except StorageUnavailable as e:
            print(f"storage unavailable: {e.__cause__}", file=sys.stderr)
            return 1
        finally:
            store.close()


def export(args: argparse.Namespace) -> int:
    """A pseudonymised export of one purpose for one recipient abroad (``core/export.py``):
    0 written; 2 refused (unknown recipient or purpose, a bad argument or setting); 3 refused
    (the recipient's yearly ceiling: nothing written); 1 the store or the disk failed."""
    from pathlib import Path

    from ..core.config import DEFAULTS, from_env
    from ..core.errors import ConfigError
    from ..core.export import (
        Exporter,
        ExportRefused,
        ExportUnpublished,
        parse_since,
        settings_from,
    )
    from ..core.parquet import ParquetSink

    out = Path(args.out).absolute()
    try:
        since_ms = parse_since(args.since) if args.since else None
    except ValueError:
        print(f"export: --since {args.since!r}: an ISO 8601 date or time", file=sys.stderr)
        return 2
    if not out.parent.is_dir() or out.exists():
        print(f"export: {out}: its folder must exist, and the file must not", file=sys.stderr)
        return 2
    try:
        settings = settings_from(DEFAULTS | from_env(), INSTANCE)
    except ConfigError as e:
        print(f"export: {e}", file=sys.stderr)
        return 2
    with _store_url("export") as url:
        store, cat = _storage(url)
        try:
            min_grant = {p: i + 1 for p, i in cat.last_change.items()}
            exporter = Exporter(store.exports, cat, min_grant, settings, ParquetSink)
            done = exporter.run(args.purpose, args.recipient, out, since_ms)
        except ExportRefused as e:
            print(f"export: {e}", file=sys.stderr)
            return e.exit_code
        except ConfigError as e:
            print(f"export: {e}", file=sys.stderr)
            return 2
        except StorageUnavailable as e:
            print(
                f"export: the store at {shown(url)} does not answer ({e.__cause__}); "
                "nothing was written",
                file=sys.stderr,
            )
            return 1
        except ExportUnpublished as e:
            print(f"export: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"export: {e}; nothing was written", file=sys.stderr)
            return 1
        finally:
            store.close()
    print(
        f"{done.path}: {done.rows} rows of {done.people} people ({done.new_people} new to "
        f"{args.recipient}, {done.year_people} in {done.year}); sha256 {done.sha256}; "
        f"export {done.id}"
    )
    return 0
