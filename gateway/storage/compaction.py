"""Erased values leave the store's files too, within ``ERASURE_COMPACT_S`` (60 s by default).

An erasure removes a subject's event parts from the shared purpose streams with ``XDEL``,
which only flags the entries: their bytes stay in the stream's listpack, so every file the
store writes in RDB form (``dump.rdb``, or the append-only file's base with
``aof-use-rdb-preamble yes``) keeps them, and the AOF's incremental file keeps the commands
that wrote them. An AOF rewrite without the RDB preamble writes live entries only, as
commands, and then deletes the older files. So after an erasure the gateway has the store
rewrite its AOF (``BGREWRITEAOF``), on every server holding data (each master of a cluster):

- each erasure is counted in the store after its own step (``gw:erasure``: ``seq``), with
  the store's time of the first erasure no rewrite has claimed yet (``since``);
- every serving gateway process has a thread looking every ``ERASURE_COMPACT_S / 20``; under
  a lock in the store (``gw:lock:erasure-compaction``) one of them claims the erasures
  counted so far (``claimed``), then sends ``BGREWRITEAOF`` to each server. A server executes
  commands in order and forks for the rewrite after the claim, hence after every erasure the
  claim counts: they are ``covered`` once every server reports its rewrite done and ok. A
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
``erasure_files`` and docs/privacy.md says what to configure. Replicas keep their own files.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.exceptions import RedisError, ResponseError

from .client import Client, lua, primaries
from .periodic import Periodic, store_lock

log = logging.getLogger(__name__)

STATE = "gw:erasure"  # hash: seq, since, covered, claimed, claimed_ms, rewrites_before
LOCK = "gw:lock:erasure-compaction"
RATE = "gw:rate:erasure-rewrite"
LOCK_TTL_MS = 10_000  # a step is a few commands; a process dying in one blocks others this long
CHECK_S = 60.0  # how long a look at the store's persistence settings is trusted


@dataclass(frozen=True)
class Files:
    """What a server's persistence settings allow: ``status`` is ``"ok"`` or why not;
    ``action``: ``rewrite`` (rewrite the AOF after erasures), ``none`` (nothing is written
    to files) or ``cannot`` (a rewrite would keep the erased bytes)."""

    status: str
    action: str


def check_files(r: redis.Redis) -> Files:
    """Read a server's persistence settings (``CONFIG GET``, never ``SET``)."""
    pipe = r.pipeline(transaction=False)
    for name in ("appendonly", "aof-use-rdb-preamble", "save", "maxmemory", "maxmemory-policy"):
        pipe.config_get(name)
    answers = pipe.execute(raise_on_error=False)
    for answer in answers:
        if isinstance(answer, RedisError) and not isinstance(answer, ResponseError):
            raise answer
    if any(isinstance(a, ResponseError) for a in answers):
        # CONFIG refused (a managed server): rewrite when the AOF is on, but claim nothing
        aof = bool(r.info("persistence").get("aof_enabled"))
        return Files("unknown: the store refuses CONFIG GET", "rewrite" if aof else "cannot")
    appendonly, preamble, save, maxmemory, policy = (next(iter(a.values()), "") for a in answers)
    problems = []
    if str(maxmemory) not in ("", "0") and policy != "noeviction":
        # a subject's index, consent and ledger expire; the streams do not: evicting the index
        # first would leave parts that withdrawals and erasures can no longer find
        problems.append(f"maxmemory-policy is {policy!r} (evicted indexes hide parts from erasure)")
    if appendonly == "yes" and preamble == "yes":
        problems.append("aof-use-rdb-preamble is yes (the AOF base keeps erased stream entries)")
    if save.strip():
        problems.append(f"save is {save!r} (RDB snapshots keep erased stream entries)")
    status = "; ".join(problems) or "ok"
    if appendonly != "yes":
        return Files(status, "none" if status == "ok" else "cannot")
    return Files(status, "cannot" if preamble == "yes" else "rewrite")


def _name(node: redis.Redis) -> str:
    kwargs = node.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def _server_ms(r: Any) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


class ErasureCompactor:
    """Has the store rewrite its AOF after erasures (see the module's docstring).

    ``count(result)`` is told of each rewrite: ``started``, ``completed``, ``failed``."""

    def __init__(self, client: Client, count: Callable[[str], None], bound_s: float) -> None:
        if not bound_s > 0:
            raise ValueError("ERASURE_COMPACT_S must be positive")
        self.r = client
        self.count = count
        self.bound_s = float(bound_s)
        self.interval_ms = max(1, int(bound_s * 500))  # one claim per S/2
        self.settle_ms = int(bound_s * 200)  # a claim waits until the first erasure is S/5 old
        self.job = Periodic("erasure-compaction", bound_s / 20, self.step)
        self._record = client.register_script(lua("erasure_record"))
        self._claim = client.register_script(lua("erasure_claim"))
        self._release = client.register_script(lua("lock_release"))
        self._files: tuple[float, Files] | None = None
        self._reported: str | None = None

    def start(self) -> None:
        self.job.start()

    def stop(self) -> None:
        self.job.stop()

    def record_erasure(self) -> None:
        """Count one erasure, after its own step: the next rewrite claimed covers it."""
        self._record(keys=[STATE], args=[])

    def files(self) -> Files:
        """The servers' persistence settings together, looked at again after ``CHECK_S``."""
        now = time.monotonic()
        if self._files is not None and now - self._files[0] < CHECK_S:
            return self._files[1]
        nodes = primaries(self.r)
        found = [check_files(node) for node in nodes]
        problems = [
            f.status if len(nodes) == 1 else f"{_name(n)}: {f.status}"
            for n, f in zip(nodes, found, strict=True)
            if f.status != "ok"
        ]
        actions = {f.action for f in found}
        action = "cannot" if "cannot" in actions else "rewrite" if "rewrite" in actions else "none"
        combined = Files("; ".join(problems) or "ok", action)
        self._files = (now, combined)
        if combined.status != self._reported:
            if combined.status == "ok":
                if self._reported is not None:
                    log.warning("erased values leave the store's files again")
            else:
                log.warning(
                    "erased values may stay in the store's files: %s (docs/privacy.md)",
                    combined.status,
                )
            self._reported = combined.status
        return combined

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
        with store_lock(self.r, self._release, LOCK, LOCK_TTL_MS) as held:
            if held:
                self._advance(files)

    def _rewriting(self) -> list[redis.Redis]:
        """The servers whose AOF a rewrite after erasures concerns."""
        return [n for n in primaries(self.r) if check_files(n).action == "rewrite"]

    def _advance(self, files: Files) -> None:
        nodes = self._rewriting()
        infos = {_name(n): n.info("persistence") for n in nodes}
        busy = any(
            i.get("aof_rewrite_in_progress") or i.get("aof_rewrite_scheduled")
            for i in infos.values()
        )
        state = cast("dict[str, str]", self.r.hgetall(STATE))
        if "claimed" in state:
            if busy:
                return
            self._settle(state, infos)
            state = cast("dict[str, str]", self.r.hgetall(STATE))
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
        before = {name: int(info.get("aof_rewrites", -1)) for name, info in infos.items()}
        self._claim(keys=[STATE], args=[now_ms, json.dumps(before)])
        for node in nodes:
            try:
                node.bgrewriteaof()
            except ResponseError as e:
                if "already in progress" in str(e):  # one began since INFO: settle decides
                    continue
                self._unclaim(now_ms)
                self.count("failed")
                log.warning("the store refused to rewrite its AOF after erasures: %s", e)
                return
        self.count("started")

    def _settle(self, state: dict[str, str], infos: dict[str, dict[str, Any]]) -> None:
        """No claimed rewrite is running any more: covered if each ran and succeeded."""
        try:
            before = json.loads(state.get("rewrites_before", "{}"))
        except ValueError:
            before = {}
        done = all(
            (count := info.get("aof_rewrites")) is None or int(count) > int(before.get(name, -1))
            for name, info in infos.items()
        ) and all(info.get("aof_last_bgrewrite_status") == "ok" for info in infos.values())
        if done:
            pipe = self.r.pipeline(transaction=False)
            pipe.hset(STATE, "covered", state["claimed"])
            pipe.hdel(STATE, "claimed", "claimed_ms", "rewrites_before")
            pipe.execute()
            self.count("completed")
            return
        self._unclaim(int(state.get("claimed_ms", 0)))
        self.count("failed")
        log.warning(
            "the store's AOF rewrite after erasures failed (%s): trying again",
            ", ".join(
                f"{name} {info.get('aof_last_bgrewrite_status')}" for name, info in infos.items()
            ),
        )

    def _unclaim(self, claimed_ms: int) -> None:
        """The claimed erasures are pending again, since the time of the claim."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(STATE, "claimed", "claimed_ms", "rewrites_before")
        pipe.hset(STATE, "since", claimed_ms)
        pipe.execute()
