"""Connecting to the store, and the one place where redis errors become the core's.

``connect`` asks the server at ``REDIS_URL`` whether it runs in cluster mode and answers a
``redis.Redis`` or a ``redis.cluster.RedisCluster`` accordingly: nothing else changes for
the user. Every public method of the storage layer runs under ``translated``: a store that
does not answer, or answers that it cannot take requests now (full, read-only, loading, a
cluster without quorum), becomes ``StorageUnavailable``, and no redis exception leaves the
layer.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    MasterDownError,
    MovedError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..core.errors import StorageUnavailable

log = logging.getLogger(__name__)

Client = redis.Redis | RedisCluster


class ReplyLost(RedisConnectionError):
    """The connection failed after a command was sent: it may have run. Not retried (its own
    class is not in ``_Cluster.ERRORS_ALLOW_RETRY``); a 503 like any connection error."""


def not_sent(e: RedisConnectionError) -> bool:
    """Whether a connection error happened before the request reached a server (refused:
    the node is gone), rather than after (the request may have run)."""
    cause = e.__cause__ or e.__context__
    return isinstance(cause, ConnectionRefusedError) or "refused" in str(e).lower()


class _Cluster(RedisCluster):
    """redis-py's cluster client, which retries a command after a timeout or a connection
    lost mid-reply too (its class attribute ``ERRORS_ALLOW_RETRY``, an exact-type check,
    whatever the ``retry`` object says): such a script may have run, and a second run of one
    that is not idempotent (a saved login's resume, a bucket's take) would answer wrongly.
    Here only a node that did not take the command (refused, or a cluster still moving its
    slots) is retried. (Its pipelines keep redis-py's own rules: the gateway's cluster
    pipelines only read, or write idempotently.)"""

    ERRORS_ALLOW_RETRY = (RedisConnectionError, ClusterDownError, SlotNotCoveredError)  # type: ignore[assignment]

    def _execute_command(self, target_node: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._execute_command(target_node, *args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as e:
            if type(e) is RedisConnectionError and not not_sent(e):
                raise ReplyLost(str(e)) from e
            raise


P = ParamSpec("P")
T = TypeVar("T")

# The store answered but cannot take a request now: like a store that does not answer.
_REFUSALS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    BusyLoadingError,
    MasterDownError,
    ClusterDownError,
    ClusterError,
    TryAgainError,
)
# BUSY: another client's script has run past busy-reply-threshold (an erasure or a purge of
# a large subject can): the command was not run, and the store answers again once it ends.
_REFUSAL_PREFIXES = (
    "MISCONF",
    "NOREPLICAS",
    "LOADING",
    "READONLY",
    "OOM",
    "CLUSTERDOWN",
    "BUSY",
)


def refused(err: BaseException) -> bool:
    """Whether a redis error means the store cannot take requests now (503), not a bug."""
    if isinstance(err, _REFUSALS):
        return True
    return isinstance(err, ResponseError) and str(err).startswith(_REFUSAL_PREFIXES)


@contextmanager
def translated() -> Iterator[None]:
    """Redis errors as the core's: ``StorageUnavailable`` when the store cannot serve, a
    ``RuntimeError`` (a bug: 500) for any other."""
    try:
        yield
    except (MovedError, AskError) as e:
        # A cluster's answer to a client that takes it for a single server: the gateway
        # started while the store did not answer, and REDIS_CLUSTER=auto took it for one.
        log.error(
            "the store answered %s (%s): a slot moved or is moving; if the store is a cluster "
            "the gateway took for a single server (it did not answer at start), set "
            "REDIS_CLUSTER=yes or restart the gateway while the cluster answers",
            type(e).__name__,
            e,
        )
        raise StorageUnavailable(
            "storage is unavailable; nothing was stored, retry later",
            fields={"store": type(e).__name__},
        ) from e
    except RedisClusterException as e:  # no node answers: not a RedisError
        raise StorageUnavailable(
            "storage is unavailable; nothing was stored, retry later",
            fields={"store": type(e).__name__},
        ) from e
    except RedisError as e:
        if refused(e):
            raise StorageUnavailable(
                "storage is unavailable; nothing was stored, retry later",
                fields={"store": type(e).__name__},
            ) from e
        raise RuntimeError(f"the store refused a command: {e}") from e


def translating(method: Callable[P, T]) -> Callable[P, T]:
    """``translated`` around a method."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with translated():
            return method(*args, **kwargs)

    return wrapper


def lua(name: str) -> str:
    """A script of ``lua/``, with the shared bucket functions in front where it uses them."""
    folder = resources.files("gateway.storage").joinpath("lua")
    text = folder.joinpath(f"{name}.lua").read_text("utf-8")
    if "refill(" in text or "keep(" in text or "clock()" in text:
        text = folder.joinpath("bucket.lua").read_text("utf-8") + "\n" + text
    if "purge(" in text:
        text = folder.joinpath("purge_lib.lua").read_text("utf-8") + "\n" + text
    return text


def connect(
    url: str,
    *,
    connect_timeout: float = 1.0,
    socket_timeout: float = 2.0,
    cluster: bool | None = None,
    retries: bool = True,
    decode: bool = True,
) -> Client:
    """A client that fails fast (an unreachable or hung server costs seconds, not minutes),
    of a cluster when the server says it runs in cluster mode (or ``cluster`` says so).

    Only connection errors are retried (once on a single server, for a pooled connection the
    server closed; up to three times on a cluster, learning the slots again, which is what
    carries a request over a failover); a timeout is not, since the command may have run.
    ``retries=False``: none at all (the event writer retries itself, see ``events.py``).
    ``decode=False``: replies as bytes (the audience index's serialized bitmaps).
    """
    common: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        "decode_responses": decode,
    }
    if cluster is None:
        cluster = _is_cluster(url, common)
    if cluster:
        retry = (
            Retry(ExponentialBackoff(cap=0.2, base=0.02), 3, (RedisConnectionError,))
            if retries
            else Retry(NoBackoff(), 0)
        )
        try:
            return _Cluster.from_url(url, retry=retry, **common)
        except (RedisError, RedisClusterException) as e:
            raise StorageUnavailable(
                f"the cluster at {shown(url)} does not answer ({e}): a gateway on a cluster starts "
                "once the cluster answers",
                fields={"store": type(e).__name__},
            ) from e
    if not retries:
        return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **common)
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1, (RedisConnectionError,)),
        health_check_interval=30,
        **common,
    )


def shown(url: str) -> str:
    """``url`` as it may be logged: without its user name and password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _is_cluster(url: str, common: dict[str, Any]) -> bool:
    probe = redis.Redis.from_url(url, **common)
    try:
        return bool(int(probe.info("cluster").get("cluster_enabled", 0)))
    except RedisError as e:
        log.warning(
            "could not ask the store at %s whether it is a cluster (%s): taken as a single "
            "server (set REDIS_CLUSTER=yes if it is a cluster)",
            shown(url),
            e,
        )
        return False
    finally:
        probe.close()


def primaries(client: Client) -> list[redis.Redis]:
    """A client of each server holding data: the one server, or each cluster master."""
    if isinstance(client, RedisCluster):
        nodes = client.get_primaries()  # type: ignore[no-untyped-call]
        return [node.redis_connection for node in nodes]
    return [client]


def node_of(client: Client, key: str) -> redis.Redis:
    """A client of the server that holds ``key`` (for commands of no key, such as WAITAOF,
    that must reach it)."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        return cast(redis.Redis, node.redis_connection)
    return client
