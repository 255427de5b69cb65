"""A job run every few seconds on a daemon thread of each process, and a lock in the store so
that one process of all the gateways sharing a store does it at a time."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def store_lock(client: Any, release: Any, key: str, ttl_ms: int) -> Iterator[bool]:
    """Hold ``key`` in the store for at most ``ttl_ms``; yields whether this caller got it.

    Released on exit only by its holder (a random token; ``release``: ``lua/lock_release``),
    or by its expiry.
    """
    token = uuid.uuid4().hex
    held = bool(client.set(key, token, nx=True, px=ttl_ms))
    try:
        yield held
    finally:
        if held:
            with contextlib.suppress(RedisError):
                release(keys=[key], args=[token])


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
