"""Pseudonymised exports for recipients abroad: ``gateway export``.

Clause 3(2) item 4 of the policy lets the platform send what it collected to its parent and
affiliates abroad, and the paragraph after it promises that personal information leaving the
country is technically processed first (对"个人信息"采取一定的技术处理措施); PIPL art. 38-39
ask for a basis for every transfer abroad and for telling people who receives what. So what
leaves is never the store's own data but a file made for one recipient, under rules that no
setting of the command can loosen:

* **Pseudonyms, not ids.** The ``subject`` column holds HMAC-SHA256 of the subject id under a
  key of the recipient's own, derived with HKDF-SHA256 from the export secret
  (``EXPORT_KEY``; info ``gateway.export:<recipient>``). A recipient can follow one person
  across its exports (stable within it, across runs), cannot join its file with another
  recipient's (different for each), and cannot compute the pseudonym of an id it learnt
  elsewhere (it lacks the key); the gateway's ids and stream ids never leave.
* **Fields the catalogue allows.** Each field's ``export`` rule (catalogue.toml): an address,
  a device's identity, carrier, model, a position and references into the platform's own
  records never leave, whatever the purpose; free text (what a person typed, what a URL or a
  page title carries) only to a recipient whose settings take it. Columns are an allow-list:
  a value the catalogue does not name for the purpose is dropped, not passed on.
* **Times to the hour** (UTC, ISO 8601): a recipient learns when within the hour, not the
  moment, which with a pseudonym would single out a visit.
* **Consent standing now.** A subject whose purpose is not granted at export time (withdrawn,
  erased, or granted under a policy version older than the purpose's last change: the
  gateway's own ``granted_now`` rule) contributes nothing.
* **A ceiling per recipient and calendar year** (UTC): the people a recipient received this
  year stay below ``EXPORT_MAX_SUBJECTS_PER_YEAR`` (100,000 by default: the 2024 provisions
  on cross-border data flows, art. 5(4), exempt a handler that sent personal information of
  fewer than 100,000 people abroad since 1 January, sensitive information excluded). An export
  that would reach it is refused and writes nothing: the file is written to a temporary name
  beside its destination and renamed only once the store counted it (``ExportStore.commit``).
* **An audit entry for each** export (recipient, purpose, time range, rows, people, columns,
  the file's SHA-256, when), and for each refusal: ``GET /v1/exports`` lists them.

The store is read a page at a time and rows are written a row group at a time, so an export
holds one page of entries, one row group and a map of the subjects seen, never the purpose.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .catalogue import Catalogue, Field
from .consent import granted_now
from .errors import ConfigError, StorageUnavailable
from .once import write_once
from .ports import ExportStore, StoredEntry

log = logging.getLogger(__name__)

KEY_FILE = "export_key"  # the instance folder's export secret when EXPORT_KEY is not set
MIN_SECRET = 16  # characters of a configured EXPORT_KEY
HKDF_INFO = b"gateway.export:"
RECIPIENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # names key names and HKDF info
RECIPIENT_SETTINGS = frozenset({"free_text"})
PAGE = 200  # stream entries read at once (each holds up to a batch: 500 parts)
ROW_GROUP = 50_000  # rows per Parquet row group, the rows held at once
YEAR_MARGIN = timedelta(days=31)  # a year's people are kept this long after it ends
HOUR = "%Y-%m-%dT%H:00:00Z"
FIXED_COLUMNS = (("subject", "string"), ("type", "string"), ("ts", "string"))
SHOWN = 64  # characters of a refused recipient's or purpose's name kept in the audit

# exit codes of ``gateway export``
EXIT_REFUSED = 2  # unknown recipient or purpose, a bad argument or setting
EXIT_CEILING = 3


class ExportRefused(Exception):
    """An export that did not happen, and why: ``reason`` (``unknown_recipient``,
    ``unknown_purpose``, ``ceiling``) and the command's exit code."""

    def __init__(self, reason: str, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.exit_code = exit_code


class ExportUnpublished(OSError):
    """An export counted and recorded whose file could not be put under its name (another
    took the name meanwhile): the file stays under its temporary name, which the message
    gives, with the hash the audit log holds."""


@dataclass(frozen=True, slots=True)
class Recipient:
    name: str
    free_text: bool = False  # search keywords, page titles, URLs: only when said so


@dataclass(frozen=True, slots=True)
class Settings:
    recipients: Mapping[str, Recipient]
    ceiling: int  # a recipient's people in a calendar year stay below it
    secret: Callable[[], bytes]  # the export secret, made (or read) when an export needs it


@dataclass(frozen=True, slots=True)
class Exported:
    """A written export: its audit entry's fields as the command reports them."""

    id: str
    path: Path
    rows: int
    people: int
    new_people: int
    year_people: int
    year: int
    sha256: str
    columns: tuple[str, ...]


class Sink(Protocol):
    """Where rows go, a row group at a time (``core/parquet.py``'s ``ParquetSink``)."""

    def write(self, columns: Mapping[str, list[Any]]) -> None: ...

    def close(self) -> None: ...


# (path, columns as (name, catalogue type), file metadata) -> a sink writing there
SinkFactory = Callable[[Path, Sequence[tuple[str, str]], Mapping[str, str]], Sink]


# ---------------------------------------------------------------------- settings
def recipients(raw: object) -> dict[str, Recipient]:
    """``EXPORT_RECIPIENTS``: a JSON object (or a mapping) of recipient names to their
    settings, ``{"analytics-sg": {"free_text": false}}``. Free text is refused unless a
    recipient's settings say ``true``. ConfigError for anything else."""
    if raw is None or raw == "":
        return {}
    data: object = raw
    if isinstance(raw, str | bytes):
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise ConfigError(f"EXPORT_RECIPIENTS is not JSON: {e}") from e
    if not isinstance(data, Mapping):
        raise ConfigError('EXPORT_RECIPIENTS: a JSON object, {"<name>": {"free_text": false}}')
    out: dict[str, Recipient] = {}
    for name, settings in data.items():
        if not isinstance(name, str) or not RECIPIENT.fullmatch(name):
            raise ConfigError(
                f"EXPORT_RECIPIENTS: recipient {name!r}: letters, digits, '_', '.' and '-', "
                "at most 64, starting with a letter or digit"
            )
        if not isinstance(settings, Mapping) or set(settings) - RECIPIENT_SETTINGS:
            raise ConfigError(
                f"EXPORT_RECIPIENTS: recipient {name}: settings are an object of "
                f"{sorted(RECIPIENT_SETTINGS)}"
            )
        free_text = settings.get("free_text", False)
        if not isinstance(free_text, bool):
            raise ConfigError(f"EXPORT_RECIPIENTS: recipient {name}: free_text is true or false")
        out[name] = Recipient(name, free_text)
    return out


def export_secret(configured: str | None, instance: Path, dev: bool = False) -> bytes:
    """``EXPORT_KEY``; else a secret made once in the instance folder (``once.write_once``:
    mode 0600), like the gateway's own secret key. Made outside development it is a warning:
    pseudonyms stay the same across runs only while the file does, and only on this machine."""
    if configured:
        if len(configured) < MIN_SECRET:
            raise ConfigError(f"EXPORT_KEY: at least {MIN_SECRET} characters")
        return configured.encode()
    path = instance / KEY_FILE
    if path.is_file():
        return path.read_bytes().strip()
    made, new = write_once(path, (secrets.token_urlsafe(48) + "\n").encode())
    if new:
        if dev:
            log.info("GATEWAY_EXPORT_KEY not set: generated an export key in %s", path)
        else:
            log.warning(
                "GATEWAY_EXPORT_KEY not set: generated an export key in %s; recipients' "
                "pseudonyms stay the same only while it does: keep it, or set "
                "GATEWAY_EXPORT_KEY (docs/configuration.md)",
                path,
            )
    return made.strip()


def settings_from(cfg: Mapping[str, Any], instance: Path) -> Settings:
    """The export settings of a configuration (``config.DEFAULTS`` and the environment)."""
    ceiling = int(cfg["EXPORT_MAX_SUBJECTS_PER_YEAR"])
    if ceiling < 1:
        raise ConfigError("EXPORT_MAX_SUBJECTS_PER_YEAR: at least 1")
    configured = cfg.get("EXPORT_KEY")
    dev = bool(cfg.get("DEV"))
    return Settings(
        recipients(cfg.get("EXPORT_RECIPIENTS")),
        ceiling,
        lambda: export_secret(configured, instance, dev),
    )


# ---------------------------------------------------------------------- the rules
class Pseudonyms:
    """A recipient's pseudonyms: HMAC-SHA256 of the subject id (hex) under the recipient's own
    key, HKDF-SHA256 of the export secret with info ``gateway.export:<recipient>``."""

    def __init__(self, secret: bytes, recipient: str) -> None:
        self._key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=HKDF_INFO + recipient.encode(),
        ).derive(secret)

    def __call__(self, sid: str) -> str:
        return hmac.new(self._key, sid.encode(), hashlib.sha256).hexdigest()


def hour_of(ts: object, stored_ms: int) -> str:
    """An event's time to the hour, UTC, ISO 8601 (``2026-12-01T08:00:00Z``): its ``ts``
    (one without an offset taken as UTC), or when it was stored if it has none."""
    when: datetime | None = None
    if isinstance(ts, str):
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(ts)
    if when is None:
        when = datetime.fromtimestamp(stored_ms / 1000, UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime(HOUR)


_INT64 = 2**63


def column_value(kind: str, value: object) -> object:
    """A stored value as its column holds it, or None when it is not of the field's type (a
    value of another type is never passed on as it is)."""
    if kind in ("string", "url"):
        return value if isinstance(value, str) else None
    if isinstance(value, bool):
        return value if kind == "boolean" else None
    if kind == "integer":
        return value if isinstance(value, int) and -_INT64 <= value < _INT64 else None
    if kind == "number":
        return float(value) if isinstance(value, int | float) else None
    return None


def columns(cat: Catalogue, purpose: str, recipient: Recipient) -> tuple[Field, ...]:
    """The fields an export of ``purpose`` to ``recipient`` carries, besides subject, type and
    the hour (the catalogue's ``export`` rules)."""
    return cat.export_fields(purpose, free_text=recipient.free_text)


def parse_since(text: str) -> int:
    """``--since``: an ISO 8601 date or time (UTC unless it states an offset), in ms."""
    when = datetime.fromisoformat(text)  # ValueError for anything else
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def year_end_ms(year: int) -> int:
    """When a year's set of people lapses: the year's end and a margin (clocks, late runs)."""
    return int((datetime(year + 1, 1, 1, tzinfo=UTC) + YEAR_MARGIN).timestamp() * 1000)


# ---------------------------------------------------------------------- the export
class Exporter:
    """Makes exports: one purpose, one recipient, one file."""

    def __init__(
        self,
        store: ExportStore,
        cat: Catalogue,
        min_grant: Mapping[str, int],
        settings: Settings,
        sink: SinkFactory,
        *,
        clock: Callable[[], float] = time.time,
        page: int = PAGE,
        row_group: int = ROW_GROUP,
    ) -> None:
        self.store = store
        self.cat = cat
        self.min_grant = min_grant
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.page = page
        self.row_group = row_group

    def run(self, purpose: str, recipient: str, out: Path, since_ms: int | None = None) -> Exported:
        """Write the export to ``out`` (a new file in an existing folder), or raise
        ExportRefused having written nothing. Every refusal is in the audit log; a failure of
        the store or the disk (StorageUnavailable, OSError) publishes and counts nothing, but
        for ExportUnpublished (counted and recorded, the file kept under another name)."""
        if not out.parent.is_dir():
            raise FileNotFoundError(f"{out.parent}: no such folder")
        if out.exists():
            raise FileExistsError(f"{out}: exists (an export never writes over a file)")
        now_ms = int(self.clock() * 1000)
        export_id = secrets.token_hex(8)
        entry = {
            "id": export_id,
            "recipient": recipient[:SHOWN],
            "purpose": purpose[:SHOWN],
            "since": iso_ms(since_ms) if since_ms is not None else "",
            "until": iso_ms(now_ms),
        }
        who = self.settings.recipients.get(recipient)
        if who is None:
            known = ", ".join(sorted(self.settings.recipients)) or "none"
            self._refuse(
                entry,
                "unknown_recipient",
                f"unknown recipient {recipient!r}: EXPORT_RECIPIENTS names {known}",
            )
        found = self.cat.purposes.get(purpose)
        if found is None or found.always_on:
            optional = ", ".join(self.cat.optional_purposes)
            self._refuse(
                entry, "unknown_purpose", f"unknown purpose {purpose!r}: one of {optional}"
            )
        fields = columns(self.cat, purpose, who)
        names = tuple(f.name for f in fields)
        year = datetime.fromtimestamp(now_ms / 1000, UTC).year
        ceiling = self.settings.ceiling
        pseudonym = Pseudonyms(self.settings.secret(), who.name)
        metadata = {"gateway.export": json.dumps(self._about(entry, who))}
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
        os.close(fd)
        temporary = Path(name)
        published = False
        try:
            sink = self.sink(
                temporary, [*FIXED_COLUMNS, *((f.name, f.type) for f in fields)], metadata
            )
            try:
                rows, people = self._write(
                    sink, export_id, purpose, fields, pseudonym, since_ms or 0, now_ms
                )
            finally:
                sink.close()
            digest = _sha256(temporary)
            entry |= {
                "rows": str(rows),
                "people": str(people),
                "year": str(year),
                "ceiling": str(ceiling),
                "columns": ",".join(names),
                "free_text": "1" if who.free_text else "0",
                "file": out.name,
            }
            done = self.store.commit(
                export_id, who.name, year, ceiling, year_end_ms(year), entry, digest
            )
            if done.outcome != "exported":
                raise ExportRefused(
                    "ceiling",
                    f"refused: {who.name} would have received {done.year_people} people or "
                    f"more in {year} ({done.new_people} or more new in this export); it stays "
                    f"below EXPORT_MAX_SUBJECTS_PER_YEAR={ceiling}. Nothing was written",
                    EXIT_CEILING,
                )
            try:
                _publish(temporary, out)
            except OSError as e:
                published = True  # counted and audited: the file stays, under its temporary name
                raise ExportUnpublished(
                    f"export {export_id} was counted and recorded (sha256 {digest}) but could "
                    f"not be put under {out} ({e}): it is {temporary}"
                ) from e
            published = True
        finally:
            if not published:
                temporary.unlink(missing_ok=True)
                with contextlib.suppress(StorageUnavailable):
                    self.store.discard(export_id)
        return Exported(
            export_id,
            out,
            rows,
            people,
            done.new_people,
            done.year_people,
            year,
            digest,
            names,
        )

    def _about(self, entry: Mapping[str, str], who: Recipient) -> dict[str, Any]:
        """What the file says of itself (its metadata, for the recipient's tools)."""
        return {
            "id": entry["id"],
            "recipient": who.name,
            "purpose": entry["purpose"],
            "since": entry["since"] or None,
            "until": entry["until"],
            "policy_version": self.cat.current.version,
            "subject": "HMAC-SHA256 pseudonym under the recipient's own key",
            "ts": "UTC, to the hour",
        }

    def _refuse(self, entry: dict[str, str], reason: str, message: str) -> NoReturn:
        """Audit a refusal made before anything was read, and raise it."""
        try:
            self.store.note({**entry, "outcome": "refused", "reason": reason})
        except StorageUnavailable as e:
            message += f" (not in the audit log: the store does not answer: {e})"
        raise ExportRefused(reason, message, EXIT_REFUSED)

    def _write(
        self,
        sink: Sink,
        export_id: str,
        purpose: str,
        fields: tuple[Field, ...],
        pseudonym: Pseudonyms,
        since_ms: int,
        until_ms: int,
    ) -> tuple[int, int]:
        """Rows of the purpose's entries whose subject's consent stands, into ``sink`` a row
        group at a time; each new person staged in the store. Rows and people written; it
        stops early once the people alone reach the ceiling (the commit refuses then)."""
        # subject -> its pseudonym, or None when the purpose is not granted to it now
        people: dict[str, str | None] = {}
        counted = 0
        buffer: dict[str, list[Any]] = {name: [] for name, _ in FIXED_COLUMNS}
        buffer |= {f.name: [] for f in fields}
        rows = 0
        for page in self.store.purpose_entries(purpose, since_ms, until_ms, self.page):
            new = self._decide(page, purpose, pseudonym, people)
            self.store.stage(export_id, new)
            counted += len(new)
            if counted >= self.settings.ceiling:
                break
            for row in _rows(page, people, fields):
                for name, value in row:
                    buffer[name].append(value)
                rows += 1
                if len(buffer["subject"]) >= self.row_group:
                    sink.write(buffer)
                    buffer = {name: [] for name in buffer}
        if buffer["subject"]:
            sink.write(buffer)
        return rows, counted

    def _decide(
        self,
        page: list[StoredEntry],
        purpose: str,
        pseudonym: Pseudonyms,
        people: dict[str, str | None],
    ) -> list[str]:
        """Whether the purpose stands now for the subjects of ``page`` not seen before (one
        round trip); the pseudonyms of those it stands for."""
        unseen = list(dict.fromkeys(sid for sid, _, _ in page if sid and sid not in people))
        new: list[str] = []
        for sid, record in self.store.consents(unseen).items():
            if purpose in granted_now(self.cat, record, self.min_grant):
                people[sid] = name = pseudonym(sid)
                new.append(name)
            else:
                people[sid] = None
        return new


def _rows(
    page: list[StoredEntry], people: Mapping[str, str | None], fields: tuple[Field, ...]
) -> Iterator[list[tuple[str, object]]]:
    """The rows of a page's parts whose subject counts, as (column, value) pairs."""
    for sid, stored_ms, parts in page:
        name = people.get(sid)
        if name is None:
            continue
        for part in parts:
            kind = part.get("type")
            row: list[tuple[str, object]] = [
                ("subject", name),
                ("type", kind if isinstance(kind, str) else None),
                ("ts", hour_of(part.get("ts"), stored_ms)),
            ]
            row += [(f.name, column_value(f.type, part.get(f.name))) for f in fields]
            yield row


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _publish(temporary: Path, out: Path) -> None:
    """The written file under its name, whole or not at all: synced, then linked under its
    name in its folder (atomic, and never over a file of that name) and the temporary name
    removed, and the folder synced so that the name survives a crash."""
    with temporary.open("rb+") as f:
        os.fsync(f.fileno())
    os.link(temporary, out)
    temporary.unlink()
    folder = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


# ---------------------------------------------------------------------- the audit log
_COUNTS = ("rows", "people", "new_people", "year_people", "year", "ceiling")


def export_log(store: ExportStore, since_ms: int, limit: int) -> list[dict[str, Any]]:
    """The audit log of exports from ``since_ms`` (oldest first), as ``GET /v1/exports``
    answers it: ``at`` (when it was recorded), ``id``, ``outcome`` (``exported`` or
    ``refused``, with ``reason``), ``recipient``, ``purpose``, ``since`` (null: from the
    first entry) and ``until``, and for those that read the store ``rows``, ``people``,
    ``new_people``, ``year_people``, ``year``, ``ceiling``, ``columns``, ``free_text``,
    ``file`` and, for a file written, ``sha256``."""
    out: list[dict[str, Any]] = []
    for entry_id, f in store.audit_since(since_ms, limit):
        item: dict[str, Any] = {
            "at": iso_ms(int(entry_id.split("-")[0])),
            "id": f.get("id", ""),
            "outcome": f.get("outcome", ""),
            "recipient": f.get("recipient", ""),
            "purpose": f.get("purpose", ""),
            "since": f.get("since") or None,
            "until": f.get("until", ""),
        }
        for name in ("reason", "sha256", "file"):
            if name in f:
                item[name] = f[name]
        for name in _COUNTS:
            if f.get(name, "").isdigit():
                item[name] = int(f[name])
        if "columns" in f:
            item["columns"] = [c for c in f["columns"].split(",") if c]
        if "free_text" in f:
            item["free_text"] = f["free_text"] == "1"
        out.append(item)
    return out
