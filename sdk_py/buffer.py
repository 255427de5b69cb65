"""Where tracked events wait for the consumer: in memory, or in an SQLite spool on disk.

Both keep events oldest first and hand them out in groups that share a subject and device
context (one batch each). An event leaves only when ``ack`` says the gateway answered for
it, so a batch that fails stays for the next attempt. The spool also survives the process:
an APP killed while the gateway was unreachable sends its events when it starts again.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    subject: str  # the X-Subject token the event was tracked under
    context: str  # the device context, a JSON object: events sharing it share a batch
    body: bytes  # the event, a JSON object


class Buffer(Protocol):
    def put(self, subject: str, context: str, body: bytes) -> bool: ...
    def take(self, max_n: int, max_bytes: int) -> list[Item]: ...
    def ack(self, items: list[Item]) -> None: ...
    def __len__(self) -> int: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str | None) -> None: ...
    def after_fork(self) -> None: ...
    def close(self) -> None: ...


def _group(rows: list[Item], max_bytes: int) -> list[Item]:
    """The oldest items that share the first one's subject and context, within max_bytes."""
    out: list[Item] = []
    size = 0
    for item in rows:
        if out and (item.subject, item.context) != (out[0].subject, out[0].context):
            break
        size += len(item.body) + 1
        if out and size > max_bytes:
            break
        out.append(item)
    return out


class MemoryBuffer:
    """A bounded queue in memory: fast, and lost with the process."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._items: collections.deque[Item] = collections.deque()
        self._meta: dict[str, str] = {}
        self._lock = threading.Lock()
        self._next = 0

    def put(self, subject: str, context: str, body: bytes) -> bool:
        with self._lock:
            if len(self._items) >= self.max_events:
                return False
            self._next += 1
            self._items.append(Item(self._next, subject, context, body))
            return True

    def take(self, max_n: int, max_bytes: int) -> list[Item]:
        with self._lock:
            head = [self._items[i] for i in range(min(max_n, len(self._items)))]
        return _group(head, max_bytes)

    def ack(self, items: list[Item]) -> None:
        done = {item.id for item in items}
        with self._lock:
            # the consumer acks what it took, and took from the front
            while self._items and self._items[0].id in done:
                self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)

    def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._meta.pop(key, None)
        else:
            self._meta[key] = value

    def after_fork(self) -> None:
        # The parent still holds these events and sends them: the child starts empty.
        self._lock = threading.Lock()
        self._items = collections.deque()

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    context TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SpoolBuffer:
    """Events in an SQLite file (write-ahead log): they outlive the process that tracked them.

    Each ``put`` is its own committed transaction, so an event that ``track`` accepted is on
    disk before ``track`` returns; with ``synchronous=NORMAL`` it survives the process being
    killed (and with ``durable=True``, ``FULL``, a power cut too, at a cost per event). Several
    processes may share one spool: an event sent by two of them is stored once by the gateway
    (its ``event_id``), and deleting it twice is harmless.
    """

    def __init__(
        self, path: str | os.PathLike[str], max_events: int, durable: bool = False
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self.durable = durable
        self._lock = threading.Lock()
        self._db = self._open()
        self._count: int = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
        db.executescript(_SCHEMA)
        return db

    def put(self, subject: str, context: str, body: bytes) -> bool:
        with self._lock:
            if self._count >= self.max_events:
                return False
            self._db.execute(
                "INSERT INTO events (subject, context, body) VALUES (?, ?, ?)",
                (subject, context, body),
            )
            self._count += 1
            return True

    def take(self, max_n: int, max_bytes: int) -> list[Item]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, subject, context, body FROM events ORDER BY id LIMIT ?", (max_n,)
            ).fetchall()
            self._count = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return _group([Item(i, s, c, bytes(b)) for i, s, c, b in rows], max_bytes)

    def ack(self, items: list[Item]) -> None:
        ids = [item.id for item in items]
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                self._db.execute(f"DELETE FROM events WHERE id IN ({marks})", chunk)
            self._count = max(0, self._count - len(ids))

    def __len__(self) -> int:
        return self._count

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def after_fork(self) -> None:
        # An SQLite connection must not cross a fork: the child opens its own and leaves the
        # parent's untouched (closing it here could disturb the parent's locks).
        self._lock = threading.Lock()
        self._db = self._open()

    def close(self) -> None:
        with self._lock:
            self._db.close()
