"""One gateway per instance folder: an ``flock`` on ``<instance>/gateway.lock`` held for the
gateway's whole life (the kernel releases it however the process ends), with who holds it
written inside (pid, address, the embedded store's URL), and the embedded store started and
stopped under it."""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..core.errors import InstanceTaken

INSTANCE = Path(os.environ.get("GATEWAY_INSTANCE_PATH", "instance")).resolve()
LOCK_NAME = "gateway.lock"
WAIT_S = 30.0  # how long a start waits for an apikey or retention command to finish

log = logging.getLogger("gateway.main")


class InstanceLock:
    """An ``flock`` on ``<instance>/gateway.lock``, and what its holder wrote there.

    The file is never deleted (deleting a lock file lets two processes lock two different
    files of one name): its holder empties it when it ends.
    """

    def __init__(self, instance: Path) -> None:
        instance.mkdir(parents=True, exist_ok=True)
        self.path = instance / LOCK_NAME
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False
        self.previous: dict[str, Any] = {}  # what the last holder left, read when acquired

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.held = True
        self.previous = self.holder()
        os.ftruncate(self.fd, 0)
        return True

    def holder(self) -> dict[str, Any]:
        """What the holder wrote (empty while it writes, or when nobody holds the lock)."""
        try:
            held: dict[str, Any] = json.loads(os.pread(self.fd, 65536, 0) or b"{}")
            return held
        except ValueError:
            return {}

    def record(self, **info: Any) -> None:
        """Add to the holder's record (only the holder writes)."""
        data = json.dumps(self.holder() | info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.held:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.held = False
        os.close(self.fd)

    def acquire(self, role: str) -> None:
        """Take the lock for ``role``: wait while a short command holds it, else refuse."""
        deadline = time.monotonic() + WAIT_S
        told = False
        while not self.try_acquire():
            who = self.wait_for_holder()
            if who.get("role") == "gateway" or time.monotonic() > deadline:
                self.release()
                raise InstanceTaken(self.taken(who))
            if not told:
                said = f"waiting for `{who.get('role')}` (pid {who.get('pid')}) to finish"
                print(said, file=sys.stderr)
                told = True
            time.sleep(0.1)
        self.record(pid=os.getpid(), role=role, started=now())

    def wait_for_holder(self) -> dict[str, Any]:
        """The holder's record; it may be writing it this very moment."""
        for _ in range(20):
            who = self.holder()
            if who:
                return who
            time.sleep(0.05)
        return {}

    def taken(self, who: dict[str, Any]) -> str:
        role = who.get("role", "gateway")
        what = "another gateway already serves" if role == "gateway" else f"`{role}` holds"
        pid = who.get("pid", "?")
        where = f", {who['url']}" if who.get("url") else ""
        since = f", since {who['started']}" if who.get("started") else ""
        text = f"{what} the instance folder {self.path.parent} (pid {pid}{where}{since})"
        holders = [p for p in _pids_holding(self.path) if p != os.getpid()]
        if isinstance(pid, int) and not _alive(pid) and holders:
            them = ", ".join(map(str, holders))
            return (
                f"{text}; pid {pid} has ended, but processes it started ({them}) still hold "
                "the folder. Stop them first."
            )
        return f"{text}. Stop it first, or give this one another folder (GATEWAY_INSTANCE_PATH)."


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pids_holding(path: Path) -> list[int]:
    """The processes with ``path`` open (Linux's /proc; empty elsewhere): a gateway's
    workers outlive a main process killed outright, and keep serving."""
    found = []
    target = str(path)
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
    return sorted(found)


def _stop_leftover_store(lock: InstanceLock, data: Path) -> None:
    """A store the last holder started and never stopped (it was killed outright) would
    write the same files as the one about to start: shut it down first."""
    url = lock.previous.get("store")
    if not url or lock.previous.get("store_kind") != "embedded":
        return
    from ..storage.embedded import stop_leftover

    log.debug("looking for a store left running by pid %s", lock.previous.get("pid"))
    if not stop_leftover(url, data):
        raise InstanceTaken(
            f"the store left running at {url} (data in {data}) does not stop: stop it first"
        )


def start_store(lock: InstanceLock) -> Any:
    from ..storage.embedded import start

    _stop_leftover_store(lock, INSTANCE / "valkey")
    server = start(INSTANCE)
    lock.record(store=server.connection_url, store_kind="embedded")
    return server
