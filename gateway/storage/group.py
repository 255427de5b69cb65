"""Group commit: event writes that arrive together in a process, stored by one script call.

A beacon's own work in the store is small (a few microseconds of commands); what it costs is
the call around it: redis-py's packing, a socket round trip, the reply's parsing, and on the
server the script's setup. Under load a gateway process holds several requests at once
(granian's blocking threads), so the first of them to reach the store leads: it takes every
write waiting at that moment (up to ``max_requests`` and ``max_bytes``) and sends them as one
``lua/events.lua`` call, whose answer holds each request's own result. Writes that arrive
while that call is on the wire wait for the next one, which the first of them leads. Nothing
waits on a timer: an idle process sends a lone request at once, as before.

Every request is answered only with its own result, after the call that stored it returned:
a 200 or 202 still means stored. A call that fails fails every request in it (each answers
503); after a lost reply, the requests whose ids the gateway did not mint are sent once
more, flagged as a retry (the script answers what the lost call did), exactly as a lone
request was.

On a cluster a call may only touch one slot, so there is one line of writes per slot group
(the tag every key of a subject carries): requests of different groups never wait for each
other, and requests of one group share calls. On a single server every request shares one
line. A write of many events (``DIRECT_EVENTS``: a /v1/events body of 100, an APP's batch)
skips the line and is sent at once through the pool: a call's own cost is small beside it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .client import Client

# A request's layout (lua/events.lua): P purposes, 5 + P keys, 13 + 5 P arguments
FLAGS = 4  # position of its flags among the arguments
PURPOSES = 9  # position of P
MASKS = 10  # position of the events' masks (one character an event), past 4 P arguments
IDS = 11  # position of the event ids (joined by newlines), past 4 P arguments
MAX_REQUESTS = 32
MAX_BYTES = 1 << 20  # a group's arguments: past this, the rest waits for the next call
# A write of this many events or more is sent at once through the pool, beside the line: a
# call's own cost is a few per cent of such a write's (Valkey: about 20 us a call against
# 5 us an event; the client about 50 us a call against 13 us an event), so sharing calls
# gains it little, while waiting in the line for one call at a time cost /v1/events (100
# events a body) 8 % of its rate, measured against the commit before group commit.
DIRECT_EVENTS = 32


class Write:
    """One request's keys and arguments, and, once its call returned, its answer."""

    __slots__ = ("answer", "args", "error", "keys", "lead", "minted", "wake")

    def __init__(self, keys: list[str], args: list[Any], minted: bool) -> None:
        self.keys = keys
        self.args = args
        self.minted = minted
        self.answer: Any = None
        self.error: BaseException | None = None
        self.lead = False
        self.wake = threading.Lock()
        self.wake.acquire()  # released by the leader: with an answer, or to lead

    @property
    def size(self) -> int:
        """The bytes of its arguments (weighed only when a group of several is formed)."""
        return sum(len(a) for a in self.args if isinstance(a, str | bytes))

    def result(self) -> Any:
        if self.error is not None:
            raise _copy(self.error)
        if self.answer is None:  # the leader failed in a way that set nothing: a bug
            raise RuntimeError("the group's call ended without an answer for this request")
        return self.answer


class _Line:
    __slots__ = ("busy", "lock", "queue")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list[Write] = []
        self.busy = False  # a leader is sending, or has been named and is waking


class GroupCommit:
    """Sends event writes through ``script`` on ``client``, those waiting together in one call.

    Writes of ``direct_events`` events or more go straight to ``script`` through the
    client's pool, beside the lines. ``max_requests=1`` sends every request so (as before
    group commit: what the benchmark compares with); the limits are read at each call, but
    whether there are lines at all is settled here.
    """

    def __init__(
        self,
        script: Callable[..., Any],
        client: Client,
        *,
        max_requests: int = MAX_REQUESTS,
        max_bytes: int = MAX_BYTES,
        direct_events: int = DIRECT_EVENTS,
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests: at least 1")
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._alone = max_requests == 1
        # A single server has one line, which sends one call at a time: over a connection
        # of its own (half the client's CPU of a call through the pool, measured). A cluster
        # routes each call to its slot's master through redis-py.
        self._direct = script
        self._script: Callable[..., Any] = script  # the lines'
        if not (self._cluster or self._alone) and isinstance(script, Script):
            self._script = OwnConnection(script)
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.direct_events = direct_events
        self._lines: dict[str, _Line] = {}
        self._lines_lock = threading.Lock()

    def run(self, keys: list[str], args: list[Any], minted: bool) -> Any:
        """Store one request's write; its answer (``[status, answer]``) once stored."""
        _check_layout(keys, args)
        write = Write(keys, args, minted)
        if self._alone or len(args[MASKS + 4 * args[PURPOSES]]) >= self.direct_events:
            self._send([write], self._direct)
            return write.result()
        line = self._line(keys[0])
        group: list[Write] = []
        led = False
        try:
            with line.lock:
                line.queue.append(write)
                led = not line.busy
                line.busy = True
            if not led:
                write.wake.acquire()
                led = write.lead
                if not led:
                    return write.result()
            group = self._take(line)  # a leader's own write is first in the line
            self._send(group, self._script)
        finally:
            self._leave(line, write, led)
            for w in group:
                if w.answer is None and w.error is None:  # the leader was interrupted
                    w.error = RedisConnectionError("the call holding this write was interrupted")
                if w is not write:
                    w.wake.release()
        return write.result()

    @staticmethod
    def _leave(line: _Line, write: Write, led: bool) -> None:
        """``write``'s request is done with the line: answered, interrupted or done leading.
        A leader hands the line on to the first of those who came meanwhile, or frees it; so
        does a follower interrupted while it waited (a worker told to stop) once it was named
        the next leader, and one not yet taken into a call leaves the queue: else the line
        would wait for ever on a thread that is gone. (Only a leader names the next, under
        the lock, and only a write still in the queue.) A follower answered has nothing to
        do here."""
        with line.lock:
            if write in line.queue:  # interrupted, or _take itself failed: nothing left behind
                line.queue.remove(write)
            if not (led or write.lead):
                return
            if line.queue:  # the first of those who came meanwhile leads the next call
                following = line.queue[0]
                following.lead = True
                following.wake.release()
            else:
                line.busy = False

    def _line(self, key: str) -> _Line:
        tag = key.split("}", 1)[0] if self._cluster else ""
        line = self._lines.get(tag)
        if line is None:
            with self._lines_lock:
                line = self._lines.setdefault(tag, _Line())
        return line

    def _take(self, line: _Line) -> list[Write]:
        """The writes of the next call: the first in line and those behind it, up to the
        limits. Writes of one subject may share a call, and event ids too: the first to
        store an id stores it, the other's answer names it a duplicate, and after a lost
        reply each one's resend tells by its own attempt whether it stored (events.lua)."""
        with line.lock:
            queue = line.queue
            n = min(len(queue), self.max_requests)
            if n > 1:  # (a write's size is weighed only when a group of several is formed)
                size = 0
                for i in range(n):
                    size += queue[i].size
                    if i > 0 and size > self.max_bytes:
                        n = i
                        break
            group, line.queue = queue[:n], queue[n:]
        return group

    def _send(self, group: list[Write], script: Callable[..., Any]) -> None:
        """One call for ``group``; after a lost reply, once more for those that may be sent
        again (flagged "r"). Every write ends with an answer or an error."""
        try:
            self._call(group, script)
            return
        except RedisConnectionError as e:
            lost: Exception = e
        except Exception as e:  # (anything else, an interrupt, is the leader's to raise)
            for w in group:
                w.error = e
            return
        # The reply was lost: the call may have run. Minted ids cannot be told from a first
        # run (no dedup), so those requests fail; the others go again, saying so.
        again = [w for w in group if not w.minted]
        for w in group:
            if w.minted:
                w.error = lost
        if not again:
            return
        try:
            if self._cluster:  # a failover: learn where the slot lives now
                self._client.nodes_manager.initialize()  # type: ignore[union-attr]
            for w in again:
                w.args[FLAGS] += "r"
            self._call(again, script)
        except Exception as e:
            for w in again:
                w.error = e

    def _call(self, group: list[Write], script: Callable[..., Any]) -> None:
        if len(group) == 1:
            keys, args = group[0].keys, group[0].args
        else:
            keys, args = [], []
            for w in group:
                keys += w.keys
                args += w.args
        answers = script(keys=keys, args=args, client=self._client)
        if len(answers) != len(group):
            raise RuntimeError(f"the events script answered {len(answers)} of {len(group)}")
        for w, answer in zip(group, answers, strict=True):
            w.answer = answer


class OwnConnection:
    """A script called over one connection of its client's pool, kept rather than taken and
    given back each call (the pool's lock, its liveness poll and redis-py's retry wrapper
    cost about 48 us of CPU a call here, as much as the call itself). For one caller at a
    time: the single server's line.

    Errors are redis-py's: a connection or timeout error drops the connection (the next call
    connects again), a reply error leaves it as it is; a server that lost its scripts
    (restarted, flushed) gets the script again, and the call is sent again (NOSCRIPT: it did
    not run).
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self._conn: AbstractConnection | None = None
        self._pid = 0

    def __call__(self, *, keys: list[str], args: list[Any], client: Client) -> Any:
        conn = self._connection(client)
        try:
            return self._send(conn, keys, args)
        except NoScriptError:
            client.script_load(self.script.script)
            return self._send(conn, keys, args)

    def _send(self, conn: AbstractConnection, keys: list[str], args: list[Any]) -> Any:
        command = conn.pack_command(  # type: ignore[no-untyped-call]
            "EVALSHA", self.script.sha, len(keys), *keys, *args
        )
        try:
            conn.send_packed_command(command, check_health=False)  # type: ignore[no-untyped-call]
            return conn.read_response()
        except ResponseError:  # the server's answer: the connection is fine
            raise
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]
            raise

    def _connection(self, client: Client) -> AbstractConnection:
        conn = self._conn
        if conn is None or self._pid != os.getpid():  # not one inherited by a fork
            conn = self._conn = client.connection_pool.get_connection()  # type: ignore[union-attr]
            self._pid = os.getpid()
        # As the pool checks a connection it hands out: one the server closed since (a
        # restart, CLIENT KILL, its idle timeout) reads as ready, and is opened again
        # before anything is sent on it, rather than failing a request that could be sent.
        try:
            if conn.can_read():
                raise RedisConnectionError("the connection has data or was closed")
        except (RedisConnectionError, RedisTimeoutError, OSError):
            conn.disconnect()
            conn.connect()
        return conn


def _check_layout(keys: list[str], args: list[Any]) -> None:
    """A request whose keys or arguments are not laid out as the script reads them would
    shift every request after it in a group: refused before it joins one (the script checks
    the whole call's layout again before writing anything)."""
    n = args[PURPOSES] if len(args) > PURPOSES else -1
    if not isinstance(n, int) or len(keys) != 5 + n or len(args) != 13 + 5 * n:
        raise ValueError(
            f"an events write of {len(keys)} keys and {len(args)} arguments for {n} purposes"
        )


def _copy(error: BaseException) -> BaseException:
    """The error of a shared call, raised anew in each request's thread (a traceback is
    written on the instance it is raised with)."""
    try:
        fresh = type(error)(*error.args)
    except Exception:
        return error
    fresh.__cause__ = error.__cause__ or error
    return fresh
