"""What ``gateway export`` reads and keeps (``core.ports.ExportStore``; ``core/export.py``).

It reads a purpose's stream of every slot group in turn, a page at a time (``XRANGE`` with
``COUNT``), so that an export of a big purpose holds one page of entries at once, never the
whole purpose; and the consent records of the subjects a page names, in one round trip.

What it keeps has a slot of its own, ``{exports}`` (keys.py): per recipient and calendar year
the pseudonyms it received (``exp:{exports}:people:<recipient>:<year>``, a set lapsing a month
after its year), each export's people while it runs (``...:staged:<id>``, lapsing after a
day if it never ends), and the audit log (``exp:{exports}:audit``, a stream, never trimmed: a
few hundred bytes an export, and no person in it). One slot lets the end of an export be one
script (``lua/export_commit.lua``): the ceiling checked, the people counted and the audit
entry appended together, on a single server or a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from ..core.ports import ExportCommit, StoredEntry
from ..core.records import ConsentRecord
from .client import Client, lua, translated, translating
from .consent import consent_record
from .events import entry_events
from .keys import Keys

STAGED_TTL_MS = 86_400_000  # an export that never ended: its staged people lapse
STAGE_CHUNK = 1_000  # pseudonyms per SADD


class RedisExportStore:
    def __init__(self, client: Client, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._commit = client.register_script(lua("export_commit"))

    def purpose_entries(
        self, purpose: str, since_ms: int, until_ms: int, count: int
    ) -> Iterator[list[StoredEntry]]:
        """Every slot group's stream of ``purpose`` in turn, ``count`` entries at a time
        (entry ids are times: the range is the ids')."""
        for key in self.keys.streams(purpose):
            start = str(max(since_ms, 0))
            while True:
                with translated():
                    page = cast(
                        "list[tuple[str, dict[str, str]]]",
                        self.r.xrange(key, min=start, max=str(until_ms), count=count),
                    )
                if page:
                    yield [
                        (fields.get("sid", ""), int(entry_id.split("-")[0]), entry_events(fields))
                        for entry_id, fields in page
                    ]
                if len(page) < count:
                    break
                start = "(" + page[-1][0]  # after the last one read

    @translating
    def consents(self, sids: Sequence[str]) -> dict[str, ConsentRecord]:
        if not sids:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for sid in sids:
            pipe.hgetall(self.keys.consent(sid))
        found = cast("list[dict[str, str]]", pipe.execute())
        return {sid: consent_record(raw) for sid, raw in zip(sids, found, strict=True)}

    @translating
    def stage(self, export_id: str, pseudonyms: Sequence[str]) -> None:
        if not pseudonyms:
            return
        key = self.keys.export_staged(export_id)
        pipe = self.r.pipeline(transaction=False)
        for at in range(0, len(pseudonyms), STAGE_CHUNK):
            pipe.sadd(key, *pseudonyms[at : at + STAGE_CHUNK])
        pipe.pexpire(key, STAGED_TTL_MS)
        pipe.execute()

    @translating
    def commit(
        self,
        export_id: str,
        recipient: str,
        year: int,
        ceiling: int,
        keep_until_ms: int,
        entry: Mapping[str, str],
        sha256: str,
    ) -> ExportCommit:
        keys = [
            self.keys.export_people(recipient, year),
            self.keys.export_staged(export_id),
            Keys.EXPORTS_AUDIT,
        ]
        pairs = [text for name, value in entry.items() for text in (name, value)]
        args: list[str | int] = [ceiling, keep_until_ms, sha256, _oldest_kept(), *pairs]
        answer = self._commit(keys=keys, args=args)
        outcome, new, after, entry_id = cast("list[Any]", answer)
        return ExportCommit(str(outcome), int(new), int(after), str(entry_id))

    @translating
    def discard(self, export_id: str) -> None:
        self.r.delete(self.keys.export_staged(export_id))

    @translating
    def note(self, entry: Mapping[str, str]) -> str:
        fields: dict[Any, Any] = dict(entry)
        return str(self.r.xadd(Keys.EXPORTS_AUDIT, fields, minid=_oldest_kept(), approximate=False))

    @translating
    def audit_since(self, since_ms: int, limit: int) -> list[tuple[str, dict[str, str]]]:
        found = cast(
            "list[tuple[str, dict[str, str]]]",
            self.r.xrange(Keys.EXPORTS_AUDIT, min=str(max(since_ms, 0)), count=limit),
        )
        return [(str(entry_id), dict(fields)) for entry_id, fields in found]


# The export audit log holds no person (recipient, purpose, counts, hashes) but is a record
# of transfers abroad: kept five years (PIPL art. 56 asks three for the assessments behind
# them), then trimmed by the next entry.
AUDIT_KEEP_MS = 5 * 366 * 86_400_000


def _oldest_kept() -> str:
    return str(max(int(time.time() * 1000) - AUDIT_KEEP_MS, 0))
