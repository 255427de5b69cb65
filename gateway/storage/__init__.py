"""The storage layer: everything the gateway keeps, on Redis, Valkey or Redis Cluster.

The only code that imports redis. It implements the core's interfaces (``core/ports.py``)
and hands the core typed records (``core/records.py``): no key name or hash field leaves
it. Each write is one Lua script (``lua/``) whose keys share one hash slot (``keys.py``), so
the same code runs on one server and on a cluster, which ``open_storage`` finds out by
asking the server at ``REDIS_URL``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from ..core.errors import ConfigError, StorageUnavailable
from ..core.records import Lifetimes, Limits, RetentionRun, StoreHealth
from .accounts import RedisAccountStore
from .apikeys import RedisKeyStore
from .audiences import RedisAudienceStore
from .client import Client, connect, lua, primaries, translated, translating
from .codes import RedisCodeStore
from .compaction import ErasureCompactor
from .consent import ConsentStorage
from .events import EventStorage, entry_events
from .exports import RedisExportStore
from .group import MAX_REQUESTS, GroupCommit
from .keys import LAYOUT_KEY, Keys
from .logins import RedisLoginStore
from .retention import RetentionSchedule
from .sessions import RedisSessionStore
from .subjects import SubjectStorage

__all__ = ["RedisStorage", "entry_events", "open_storage"]

log = logging.getLogger(__name__)


class RedisStorage(ConsentStorage, EventStorage, SubjectStorage):
    """``core.ports.Storage`` on Redis, Valkey or Redis Cluster. One per application."""

    def __init__(
        self,
        client: Client,
        *,
        writer: Client | None = None,
        keys: Keys,
        lifetimes: Lifetimes,
        limits: Limits | None,
        dedup_window_s: int = 86_400,
        aof_timeout_ms: int = 1_000,
        erasure_compact_s: float = 60.0,
        count_rewrite: Callable[[str], None] = lambda result: None,
        activity: Sequence[str] = (),
        raw: Client | None = None,
        group_max: int = MAX_REQUESTS,
    ) -> None:
        self.r = client
        self.keys = keys
        self.lifetimes = lifetimes
        self.limits = limits
        self.dedup_window_ms = dedup_window_s * 1000
        self.aof_timeout_ms = aof_timeout_ms
        self.cluster = isinstance(client, RedisCluster)
        # Event writes are retried here, not inside redis-py, so that the script knows when
        # it runs again after a lost reply (lua/events.lua): a client of their own.
        self._writer = writer if writer is not None else _without_retries(client)
        self._consent_script = client.register_script(lua("consent"))
        # Event writes waiting together in this process share one call (group.py).
        self._group = GroupCommit(
            client.register_script(lua("events")), self._writer, max_requests=group_max
        )
        self._take_script = client.register_script(lua("take"))
        self._erase_script = client.register_script(lua("erase"))
        self._purge_script = client.register_script(lua("purge"))
        self.logins = RedisLoginStore(client, keys, client.register_script(lua("resume")))
        self.codes = RedisCodeStore(client, keys)
        self.accounts = RedisAccountStore(client, keys)
        self.apikeys = RedisKeyStore(client, keys)
        self.sessions = RedisSessionStore(client)
        # The audience index's bitmaps are bytes: read by a client that leaves them so.
        self._raw = raw if raw is not None else _binary(client)
        self.activity = tuple(activity)
        self.audiences = RedisAudienceStore(client, keys, activity, self._raw)
        self.exports = RedisExportStore(client, keys)
        self.compactor = ErasureCompactor(client, count_rewrite, erasure_compact_s)
        self.retention = RetentionSchedule(client)
        # Per server (a cluster's masters may differ), once it answered a WAITAOF.
        self.waitaof_by_node: dict[str, bool] = {}
        self._layout_ok = False

    # ------------------------------------------------------------------ health
    def health(self) -> StoreHealth:
        try:
            with translated():
                self.r.ping()
        except Exception as e:
            return StoreHealth(False, f"unavailable: {type(e.__cause__ or e).__name__}")
        known = self.waitaof_by_node.values()
        durability = "unknown" if not known else "waitaof" if all(known) else "aof-unconfirmed"
        return StoreHealth(True, durability=durability)

    def run_retention(
        self, every_ms: int, work: Callable[[], Mapping[str, int]], *, force: bool = False
    ) -> RetentionRun | None:
        done = self.retention.run_if_due(every_ms, work, force=force)
        if done is not None and any(done.removed.values()):
            # XTRIM only flags entries of the last listpack, and the append-only file keeps
            # them until a rewrite: the erasure compaction has the store rewrite it
            self.compactor.record_erasure()
        return done

    def last_retention(self) -> RetentionRun | None:
        return self.retention.last_run()

    def erasure_files(self) -> str:
        return str(self.compactor.files_status())

    def start_housekeeping(self) -> None:
        self.compactor.start()

    def ready(self) -> None:
        """The layout check of a gateway that started while its store was away: a store of
        another layout is refused (503, logged) rather than written into."""
        if self._layout_ok:
            return
        try:
            self.check_layout()
        except ConfigError as e:
            log.error("%s", e)
            raise StorageUnavailable("the store holds another layout of keys") from e

    @translating
    def check_layout(self) -> None:
        """Refuse a store written by another layout of keys: an earlier version's, or this
        one's with another ``SLOT_GROUPS`` (subjects would map to other groups). Its data would
        be invisible to this gateway, and this gateway's writes would mix with it.

        The layout is recorded by the first gateway on an empty store. A store without the
        record is looked through for an earlier version's keys, at most ``LAYOUT_SCAN`` pages
        of each server (a store shared with other applications is not read whole at every
        start)."""
        mine = self.keys.layout
        found = cast("str | None", self.r.get(LAYOUT_KEY))
        if found == mine:
            self._layout_ok = True
            return
        if found is None:
            old = _old_layout_key(self.r)
            if old is None:
                if self.r.set(LAYOUT_KEY, mine, nx=True) or self.r.get(LAYOUT_KEY) == mine:
                    self._layout_ok = True
                    return
                found = cast("str | None", self.r.get(LAYOUT_KEY))
            else:
                found = f"an earlier version's (key {old})"
        raise ConfigError(
            f"the store at REDIS_URL holds another layout of keys ({found}; this gateway "
            f"writes {mine}, layout/SLOT_GROUPS): use the SLOT_GROUPS it was written with, "
            "give it an empty store, or empty this one"
        )

    def close(self) -> None:
        self.compactor.stop()
        self.r.close()
        if self._writer is not self.r:
            self._writer.close()
        self._raw.close()


LAYOUT_SCAN = 50  # SCAN calls of 1,000 keys per server, looking for an earlier version's keys
OLD_LAYOUT = re.compile(r"^(\{s:|ev:\{)")  # its subject keys and its streams


def _old_layout_key(client: Client) -> str | None:
    """A key of an earlier version's layout among each server's first ``LAYOUT_SCAN`` pages."""
    for node in primaries(client):
        cursor = 0
        for _ in range(LAYOUT_SCAN):
            cursor, page = node.scan(cursor, count=1000)
            old = next((str(k) for k in page if OLD_LAYOUT.match(str(k))), None)
            if old is not None:
                return old
            if cursor == 0:
                break
    return None


def _binary(client: Client) -> Client:
    """A client of the same server whose replies stay bytes (a cluster's is made by
    ``connect(url, decode=False)``)."""
    if isinstance(client, RedisCluster):
        raise TypeError("a cluster's binary client is made by connect(url, decode=False)")
    kwargs = dict(client.connection_pool.connection_kwargs)
    kwargs["decode_responses"] = False
    return _owning(
        redis.Redis(
            connection_pool=redis.ConnectionPool(
                connection_class=client.connection_pool.connection_class, **kwargs
            )
        )
    )


def _without_retries(client: Client) -> Client:
    """A client of the same server that never retries (for a single server; a cluster's is
    made by ``connect(retries=False)`` from the same URL, credentials and TLS included)."""
    if isinstance(client, RedisCluster):
        raise TypeError("a cluster's writer is made by connect(url, retries=False)")
    kwargs = dict(client.connection_pool.connection_kwargs)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    return _owning(
        redis.Redis(
            connection_pool=redis.ConnectionPool(
                connection_class=client.connection_pool.connection_class, **kwargs
            )
        )
    )


def _owning(client: redis.Redis) -> redis.Redis:
    """``client``, closing its pool when it is closed: redis-py closes only a pool it made
    itself, and these were made for it (left open, each closed gateway left its
    connections on the server, the event writer's kept one among them)."""
    client.auto_close_connection_pool = True
    return client


CLUSTER_CHOICES = {"auto": None, "yes": True, "no": False}


def open_storage(
    cfg: Any, *, lifetimes: Lifetimes, limits: Limits | None, **more: Any
) -> RedisStorage:
    """The storage of a configuration (``REDIS_URL``, timeouts, ``REDIS_CLUSTER``...)."""
    said = str(cfg["REDIS_CLUSTER"]).lower()
    if said not in CLUSTER_CHOICES:
        raise ConfigError(f"REDIS_CLUSTER={cfg['REDIS_CLUSTER']!r}: expected auto, yes or no")
    cluster = CLUSTER_CHOICES[said]
    if not str(cfg["SLOT_GROUPS"]).isdigit() or not 1 <= int(cfg["SLOT_GROUPS"]) <= 1024:
        raise ConfigError(f"SLOT_GROUPS={cfg['SLOT_GROUPS']!r}: a whole number from 1 to 1024")
    if not str(cfg["EVENT_GROUP_MAX"]).isdigit() or not 1 <= int(cfg["EVENT_GROUP_MAX"]) <= 256:
        raise ConfigError(
            f"EVENT_GROUP_MAX={cfg['EVENT_GROUP_MAX']!r}: a whole number from 1 to 256"
        )
    timeouts = {
        "connect_timeout": cfg["REDIS_CONNECT_TIMEOUT_S"],
        "socket_timeout": cfg["REDIS_SOCKET_TIMEOUT_S"],
    }
    if float(cfg["REDIS_SOCKET_TIMEOUT_S"]) * 1000 < int(cfg["AOF_TIMEOUT_MS"]) + 250:
        # A consent's confirmation waits up to AOF_TIMEOUT_MS for each reply: a socket that
        # gives up sooner turns every slow fsync into a timeout, and its retry into a guess.
        raise ConfigError(
            f"REDIS_SOCKET_TIMEOUT_S={cfg['REDIS_SOCKET_TIMEOUT_S']} must exceed "
            f"AOF_TIMEOUT_MS={cfg['AOF_TIMEOUT_MS']} by at least 0.25 s"
        )
    client = connect(cfg["REDIS_URL"], cluster=cluster, **timeouts)
    is_cluster = isinstance(client, RedisCluster)
    writer = (
        connect(cfg["REDIS_URL"], cluster=True, retries=False, **timeouts) if is_cluster else None
    )
    raw = connect(cfg["REDIS_URL"], cluster=True, decode=False, **timeouts) if is_cluster else None
    return RedisStorage(
        client,
        writer=writer,
        keys=Keys(int(cfg["SLOT_GROUPS"])),
        lifetimes=lifetimes,
        limits=limits,
        dedup_window_s=int(cfg["DEDUP_WINDOW_S"]),
        aof_timeout_ms=int(cfg["AOF_TIMEOUT_MS"]),
        erasure_compact_s=float(cfg["ERASURE_COMPACT_S"]),
        raw=raw,
        group_max=int(cfg["EVENT_GROUP_MAX"]),
        **more,
    )
