"""Erased values leave the store's files too, within ``ERASURE_COMPACT_S`` (60 s by default).

An erasure removes a subject's event parts from the shared purpose streams with ``XDEL``,
which only flags the entries: their bytes stay in the stream's listpack, so every file the
store writes in RDB form (``dump.rdb``, or the append-only file's base with
``aof-use-rdb-preamble yes``) keeps them, and the AOF's incremental file keeps the commands
that wrote them. An AOF rewrite without the RDB preamble writes live entries only, as
commands, and then deletes the older files. So after an erasure the gateway has the store
rewrite its AOF (``BGREWRITEAOF``):

- each erasure is counted in the store after its transaction (``gw:erasure``: ``seq``), with
  the server time of the first erasure no rewrite has claimed yet (``since``);
- every serving gateway process has a thread looking every ``ERASURE_COMPACT_S / 20``; under
  a lock in the store (``gw:lock:erasure-compaction``) one of them claims the erasures
  counted so far (``claimed``), then sends ``BGREWRITEAOF``. The server executes commands in
  order and forks for the rewrite after it executed the claim, hence after every erasure the
  claim counts: they are ``covered`` once the server reports that rewrite done and ok. A
  rewrite that was already running (its fork may predate the erasure) covers nothing: the
  claim waits for it to end. A failed rewrite (or a restarted server) is claimed again;
- coalescing: a claim waits until the first unclaimed erasure is ``ERASURE_COMPACT_S / 5``
  old, so a burst shares one rewrite; rate limit: one claim per ``ERASURE_COMPACT_S / 2``
  (``gw:rate:erasure-rewrite``, a key expiring after that) for every process and gateway
  sharing the store.

The bound: an erasure recorded at ``t`` is claimed by ``t + S/2 + S/20`` (a previous claim
before ``t`` blocks the next one for ``S/2``, the look comes ``S/20`` later), so its values
leave the files by ``t + S`` when the rewrite takes less than ``0.45 S`` (27 s by default),
no other rewrite is running, the store accepts the rewrite, and a gateway process serves (its
thread starts with the first request it serves: an erasure's own process always does).

A store that cannot forget (append-only file with the RDB preamble, RDB snapshots) is not
reconfigured behind its operator's back: the gateway warns once, ``/healthz`` reports it as
``erasure_files`` and docs/privacy.md says what to configure.

``Periodic`` and ``store_lock`` are the reusable part: a daemon thread per process doing some
work every few seconds, and a lock in the store so one process of all does it at a time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, current_app
from redis.exceptions import RedisError, ResponseError

from .metrics import Metrics

log = logging.getLogger(__name__)

STATE = "gw:erasure"  # hash: seq, since, covered, claimed, claimed_ms, rewrites_before
LOCK = "gw:lock:erasure-compaction"
RATE = "gw:rate:erasure-rewrite"
LOCK_TTL_MS = 10_000  # a step is a few commands; a process dying in one blocks others this long
CHECK_S = 60.0  # how long a look at the store's persistence settings is trusted
EXTENSION = "erasure_compaction"

# After the erasure's transaction: count it, and note when the first unclaimed one happened.
_RECORD_LUA = """
local t = redis.call('TIME')
redis.call('HSETNX', KEYS[1], 'since', t[1] .. string.format('%03d', math.floor(t[2] / 1000)))
return redis.call('HINCRBY', KEYS[1], 'seq', 1)
"""

# Claim every erasure counted so far for the rewrite about to be sent.
_CLAIM_LUA = """
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
redis.call('HSET', KEYS[1], 'claimed', seq, 'claimed_ms', ARGV[1], 'rewrites_before', ARGV[2])
redis.call('HDEL', KEYS[1], 'since')
return seq
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def record_erasure(r: redis.Redis) -> None:
    """Count one erasure, after its transaction: the next rewrite claimed covers it."""
    r.eval(_RECORD_LUA, 1, STATE)


@contextlib.contextmanager
def store_lock(r: redis.Redis, key: str, ttl_ms: int) -> Iterator[bool]:
    """Hold ``key`` in the store for at most ``ttl_ms``; yields whether this caller got it.

    Released on exit only by its holder (a random token), or by its expiry.
    """
    token = uuid.uuid4().hex
    held = bool(r.set(key, token, nx=True, px=ttl_ms))
    try:
        yield held
    finally:
        if held:
            with contextlib.suppress(RedisError):
                r.eval(_RELEASE_LUA, 1, key, token)


class Periodic:
    """``work()`` every ``every_s`` seconds on a daemon thread of its own, never raising.

    ``start()`` is idempotent and cheap, so it can run before each request: a process that
    never serves never starts the thread. ``stop()`` ends it (an application's closer). The
    thread holds the job weakly, so an application dropped without its closers ends it too.
    Failures are logged once each (and the recovery), and the work is tried again next time.
    """

    def __init__(self, name: str, every_s: float, work: Callable[[], None]) -> None:
        self.name = name
        self.every_s = every_s
        self._work = work
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failing: str | None = None
        weakref.finalize(self, self._stop.set)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._guard:
            if self._thread is not None or self._stop.is_set():
                return
            thread = threading.Thread(
                target=_loop,
                args=(weakref.ref(self), self._stop, self.every_s),
                name=f"gateway-{self.name}",
                daemon=True,
            )
            thread.start()
            self._thread = thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._guard:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def run_once(self) -> None:
        try:
            self._work()
        except Exception as e:  # the worker outlives whatever its store does
            what = f"{type(e).__name__}: {e}"
            if what != self._failing:
                log.warning(
                    "%s failed: %s (tried again every %.1f s)", self.name, what, self.every_s
                )
            self._failing = what
        else:
            if self._failing is not None:
                log.warning("%s works again", self.name)
            self._failing = None


def _loop(ref: weakref.ref[Periodic], stop: threading.Event, every_s: float) -> None:
    while not stop.wait(every_s):
        job = ref()
        if job is None:
            return
        job.run_once()
        del job


@dataclass(frozen=True)
class Files:
    """What the store's persistence settings allow: ``status`` is ``"ok"`` or why not;
    ``action``: ``rewrite`` (rewrite the AOF after erasures), ``none`` (nothing is written
    to files) or ``cannot`` (a rewrite would keep the erased bytes)."""

    status: str
    action: str


def check_files(r: redis.Redis) -> Files:
    """Read the store's persistence settings (``CONFIG GET``, never ``SET``)."""
    pipe = r.pipeline(transaction=False)
    for name in ("appendonly", "aof-use-rdb-preamble", "save"):
        pipe.config_get(name)
    answers = pipe.execute(raise_on_error=False)
    for answer in answers:
        if isinstance(answer, RedisError) and not isinstance(answer, ResponseError):
            raise answer
    if any(isinstance(a, ResponseError) for a in answers):
        # CONFIG refused (a managed server): rewrite when the AOF is on, but claim nothing
        aof = bool(r.info("persistence").get("aof_enabled"))
        return Files("unknown: the store refuses CONFIG GET", "rewrite" if aof else "cannot")
    appendonly, preamble, save = (next(iter(a.values()), "") for a in answers)
    problems = []
    if appendonly == "yes" and preamble == "yes":
        problems.append("aof-use-rdb-preamble is yes (the AOF base keeps erased stream entries)")
    if save.strip():
        problems.append(f"save is {save!r} (RDB snapshots keep erased stream entries)")
    status = "; ".join(problems) or "ok"
    if appendonly != "yes":
        return Files(status, "none" if status == "ok" else "cannot")
    return Files(status, "cannot" if preamble == "yes" else "rewrite")


def _server_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


class ErasureCompactor:
    """Has the store rewrite its AOF after erasures (see the module's docstring)."""

    def __init__(self, r: redis.Redis, metrics: Metrics, bound_s: float) -> None:
        if not bound_s > 0:
            raise ValueError("ERASURE_COMPACT_S must be positive")
        self.r = r
        self.metrics = metrics
        self.bound_s = float(bound_s)
        self.interval_ms = max(1, int(bound_s * 500))  # one claim per S/2
        self.settle_ms = int(bound_s * 200)  # a claim waits until the first erasure is S/5 old
        self.job = Periodic("erasure-compaction", bound_s / 20, self.step)
        self._files: tuple[float, Files] | None = None
        self._reported: str | None = None

    def start(self) -> None:
        self.job.start()

    def stop(self) -> None:
        self.job.stop()

    def files(self) -> Files:
        """The store's persistence settings, looked at again after ``CHECK_S``."""
        now = time.monotonic()
        if self._files is not None and now - self._files[0] < CHECK_S:
            return self._files[1]
        found = check_files(self.r)
        self._files = (now, found)
        if found.status != self._reported:
            if found.status == "ok":
                if self._reported is not None:
                    log.warning("erased values leave the store's files again")
            else:
                log.warning(
                    "erased values may stay in the store's files: %s (docs/privacy.md)",
                    found.status,
                )
            self._reported = found.status
        return found

    def files_status(self) -> str:
        """For ``/healthz``: ``"ok"``, or why erased values may stay in the store's files."""
        try:
            return self.files().status
        except RedisError as e:
            return f"unknown: storage unavailable ({type(e).__name__})"

    def step(self) -> None:
        """One look: nothing to do (one read), or advance under the store's lock."""
        files = self.files()
        state = self.r.hgetall(STATE)
        if "claimed" not in state:
            if int(state.get("seq", 0)) <= int(state.get("covered", 0)):
                return
            if files.action == "cannot":
                return  # pending until the operator changes the settings
        with store_lock(self.r, LOCK, LOCK_TTL_MS) as held:
            if held:
                self._advance(files)

    def _advance(self, files: Files) -> None:
        info = self.r.info("persistence")
        busy = bool(info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled"))
        state = self.r.hgetall(STATE)
        if "claimed" in state:
            if busy:
                return
            self._settle(state, info)
            state = self.r.hgetall(STATE)
        seq, covered = int(state.get("seq", 0)), int(state.get("covered", 0))
        if seq <= covered:
            return
        if files.action == "none":  # nothing persisted: nothing to rewrite
            pipe = self.r.pipeline(transaction=False)
            pipe.hset(STATE, "covered", seq)
            pipe.hdel(STATE, "since")
            pipe.execute()
            return
        if files.action != "rewrite":
            return
        now_ms = _server_ms(self.r)
        since = state.get("since")
        if since is None:  # lost (a failed claim's undo raced): count from now
            self.r.hsetnx(STATE, "since", now_ms)
            return
        if busy or now_ms < int(since) + self.settle_ms:
            return
        if not self.r.set(RATE, now_ms, nx=True, px=self.interval_ms):
            return
        self.r.eval(_CLAIM_LUA, 1, STATE, now_ms, info.get("aof_rewrites", -1))
        try:
            self.r.bgrewriteaof()
        except ResponseError as e:
            self._unclaim(now_ms)
            if "already in progress" in str(e):  # one began since INFO: claim after its end
                self.r.delete(RATE)
                return
            self.metrics.erasure_rewrites.labels(result="failed").inc()
            log.warning("the store refused to rewrite its AOF after erasures: %s", e)
            return
        self.metrics.erasure_rewrites.labels(result="started").inc()

    def _settle(self, state: dict[str, str], info: dict[str, Any]) -> None:
        """The claimed rewrite is no longer running: covered if it ran and succeeded."""
        before = int(state.get("rewrites_before", -1))
        count = info.get("aof_rewrites")  # rewrites started since the server started
        ran = count is None or before < 0 or int(count) > before
        if ran and info.get("aof_last_bgrewrite_status") == "ok":
            pipe = self.r.pipeline(transaction=False)
            pipe.hset(STATE, "covered", state["claimed"])
            pipe.hdel(STATE, "claimed", "claimed_ms", "rewrites_before")
            pipe.execute()
            self.metrics.erasure_rewrites.labels(result="completed").inc()
            return
        self._unclaim(int(state.get("claimed_ms", 0)))
        self.metrics.erasure_rewrites.labels(result="failed").inc()
        log.warning(
            "the store's AOF rewrite after erasures failed (status %s): trying again",
            info.get("aof_last_bgrewrite_status"),
        )

    def _unclaim(self, claimed_ms: int) -> None:
        """The claimed erasures are pending again, since the time of the claim."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(STATE, "claimed", "claimed_ms", "rewrites_before")
        pipe.hset(STATE, "since", claimed_ms)
        pipe.execute()


def install(app: Flask, compactor: ErasureCompactor) -> None:
    """The thread starts with the first request a process serves."""
    app.extensions[EXTENSION] = compactor
    app.before_request(compactor.start)


def files_status() -> str:
    """The current application's ``erasure_files`` (``/healthz``)."""
    return current_app.extensions[EXTENSION].files_status()
