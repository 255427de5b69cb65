"""Pseudonymised exports for recipients abroad (clause 3(2) item 4), on the real stores: the
pseudonyms (per recipient, stable), the fields that never leave whatever the purpose, free text
only when allowed, the hour, consent standing now, the yearly ceiling (refused: nothing written,
nothing counted), the audit entry with the file's hash, and ``GET /v1/exports``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import redis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.core import catalogue
from gateway.core.errors import CatalogueError, ConfigError
from gateway.core.export import (
    EXIT_CEILING,
    EXIT_REFUSED,
    Exporter,
    ExportRefused,
    ExportUnpublished,
    Pseudonyms,
    Settings,
    export_secret,
    hour_of,
    recipients,
    year_end_ms,
)
from gateway.core.parquet import ParquetSink

from ..conftest import make_config
from ..helpers import CURRENT, DEVICE, GPS, K, app_subject, event

pytestmark = pytest.mark.stores

SECRET = b"export-secret-for-the-tests-0123456789"
RECIPIENTS = {"analytics-sg": {"free_text": False}, "research-de": {"free_text": True}}
# what never leaves, whatever the purpose: the catalogue's "never" fields
NEVER = {"ip", "device_id", "carrier", "device_model", "device_brand", "gps", "quote_id"}
FREE_TEXT = {"keyword", "topic", "title", "url", "referrer"}
EVERYTHING = {
    "personalization": True,
    "account_security": True,
    "precise_location": True,
    "advertising": True,
}
CAT = catalogue.load()


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(make_config(redis_url, tmp_path, RATE_LIMITS=False))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder of its own for the exports (the gateway's instance folder is beside it)."""
    folder = tmp_path / "files"
    folder.mkdir()
    return folder


def svc(app: Flask) -> Any:
    return app.extensions["gateway"]


def exporter(app: Flask, ceiling: int = 100_000, **options: Any) -> Exporter:
    settings = Settings(recipients(RECIPIENTS), ceiling, lambda: SECRET)
    s = svc(app)
    return Exporter(s.store.exports, s.catalogue, s.min_grant, settings, ParquetSink, **options)


def person(client: FlaskClient, purposes: dict[str, bool] = EVERYTHING, **search: Any) -> str:
    """An APP subject with ``purposes``, who sent a batch with its device context and GPS: a
    search (with ``search``'s fields), a quote and a page view. Its id."""
    sid, token = app_subject(client, **purposes)
    events = [
        event("search", keyword="不锈钢螺丝", product="M3", category="BOLT", gps=GPS, **search),
        event("quote", quote_id="Q-2026-0042", product="M3", quantity=10, price=1.5),
        event("page_view", url="https://shop.example.com/s?q=螺丝", title="搜索: 螺丝"),
        event("consultation", channel="chat", topic="我的订单 13800138000"),
    ]
    resp = client.post(
        "/v1/batch", json={"context": DEVICE, "events": events}, headers={"X-Subject": token}
    )
    assert resp.status_code == 202 and resp.get_json()["stored"] == 4, resp.get_json()
    return sid


def cells(path: Path) -> list[Any]:
    """Every value of every cell of a Parquet file."""
    table = pq.read_table(path)
    return [v for column in table.to_pydict().values() for v in column]


def strings(values: list[Any]) -> str:
    return json.dumps(values, ensure_ascii=False, default=str)


# ---------------------------------------------------------------------------- the rules
def test_pseudonyms_differ_per_recipient_and_stay_the_same() -> None:
    sid = "0123456789abcdef0123456789abcdef"
    first = Pseudonyms(SECRET, "analytics-sg")(sid)
    assert first == Pseudonyms(SECRET, "analytics-sg")(sid)  # stable: a new run, the same
    assert first != Pseudonyms(SECRET, "research-de")(sid)  # each recipient its own
    assert first != Pseudonyms(SECRET + b"x", "analytics-sg")(sid)  # the secret decides
    assert first != Pseudonyms(SECRET, "analytics-sg")(sid[::-1])
    # as documented: HMAC-SHA256 under HKDF-SHA256(secret, info "gateway.export:<recipient>")
    key = HKDF(hashes.SHA256(), 32, None, b"gateway.export:analytics-sg").derive(SECRET)
    assert first == hmac.new(key, sid.encode(), hashlib.sha256).hexdigest()
    assert sid not in first and len(first) == 64


def test_an_unset_export_key_is_made_once_in_the_instance_folder(tmp_path: Path) -> None:
    made = export_secret(None, tmp_path)
    assert (tmp_path / "export_key").stat().st_mode & 0o777 == 0o600
    assert export_secret(None, tmp_path) == made and len(made) >= 32
    assert export_secret("a configured secret!", tmp_path) == b"a configured secret!"
    with pytest.raises(ConfigError, match="EXPORT_KEY"):
        export_secret("short", tmp_path)


@pytest.mark.parametrize(
    ("ts", "hour"),
    [
        ("2026-12-01T08:37:12.345Z", "2026-12-01T08:00:00Z"),
        ("2026-12-01T08:59:59.999+08:00", "2026-12-01T00:00:00Z"),  # to UTC first
        ("2026-12-01T00:10:00-01:00", "2026-12-01T01:00:00Z"),
        ("2026-12-01T08:37:12", "2026-12-01T08:00:00Z"),  # no offset: UTC
        (None, "2026-12-02T03:00:00Z"),  # none: when it was stored
        ("yesterday", "2026-12-02T03:00:00Z"),
    ],
)
def test_times_are_coarsened_to_the_hour_in_utc(ts: Any, hour: str) -> None:
    stored = int(datetime(2026, 12, 2, 3, 45, 1, tzinfo=UTC).timestamp() * 1000)
    assert hour_of(ts, stored) == hour


def test_the_catalogue_says_what_leaves_and_policy_shows_it() -> None:
    for purpose in CAT.purposes:
        for free_text in (False, True):
            names = {f.name for f in CAT.export_fields(purpose, free_text=free_text)}
            assert not names & NEVER, purpose
            assert bool(names & FREE_TEXT) <= free_text, purpose
    assert {f.name for f in CAT.fields.values() if f.export == "never"} == NEVER
    assert {f.name for f in CAT.fields.values() if f.export == "free_text"} == FREE_TEXT
    doc = CAT.policy_document()["purposes"]
    assert doc["account_security"]["fields"]["ip"]["export"] == "never"
    assert doc["personalization"]["fields"]["keyword"]["export"] == "free_text"
    assert doc["personalization"]["fields"]["product"]["export"] == "yes"


@pytest.mark.parametrize(
    ("field", "export", "error"),
    [
        ("gps", "yes", "never exported"),  # sensitive, a position
        ("ip", "free_text", "never exported"),  # the client's address
        ("quantity", "free_text", "only a string or URL"),
        ("product", "sometimes", "export is one of"),
    ],
)
def test_the_catalogue_refuses_an_export_rule_that_would_leak(
    tmp_path: Path, field: str, export: str, error: str
) -> None:
    text = (Path(catalogue.__file__).parent / "catalogue.toml").read_text("utf-8")
    start = text.index(f"[fields.{field}]\n")
    end = text.index("\n\n", start)
    table = "\n".join(
        line for line in text[start:end].splitlines() if not line.startswith("export")
    )
    broken = tmp_path / "catalogue.toml"
    broken.write_text(text[:start] + table + f'\nexport = "{export}"' + text[end:], "utf-8")
    with pytest.raises(CatalogueError, match=error):
        catalogue.load(broken)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"a b": {}}',
        '{"analytics-sg": {"free_text": "yes"}}',
        '{"analytics-sg": {"country": "SG"}}',
    ],
)
def test_recipients_settings_are_checked(raw: str) -> None:
    with pytest.raises(ConfigError, match="EXPORT_RECIPIENTS"):
        recipients(raw)


def test_recipients_take_no_free_text_unless_said() -> None:
    found = recipients('{"a": {}, "b": {"free_text": true}}')
    assert (found["a"].free_text, found["b"].free_text) == (False, True)
    assert recipients(None) == {} == recipients("")


# ---------------------------------------------------------------------------- exports
def test_an_export_holds_pseudonyms_and_never_an_address_device_or_position(
    app: Flask, client: FlaskClient, files: Path
) -> None:
    sids = [person(client) for _ in range(3)]
    written = {}
    for purpose in CAT.optional_purposes:
        out = files / f"{purpose}.parquet"
        done = exporter(app).run(purpose, "research-de", out)  # free text allowed: the most
        written[purpose] = (done, out)
        table = pq.read_table(out)
        assert not set(table.column_names) & NEVER, purpose
        assert not set(table.column_names) & {"stream_id", "event_id", "sid"}, purpose
        text = strings(cells(out)) + str(pq.read_schema(out).metadata)
        for value in ("127.0.0.1", *DEVICE.values(), "31.2304", "121.4737", "Q-2026-0042"):
            if value not in ("HarmonyOS", "4.2", "3.8.1"):  # the OS and APP version may leave
                assert value not in text, (purpose, value)
        for sid in sids:
            assert sid not in text, purpose
    done, out = written["account_security"]
    assert out.stat().st_mode & 0o777 == 0o600  # people's data: its owner's only
    table = pq.read_table(out).to_pylist()
    assert done.rows == len(table) == 3 * 4 and done.people == 3
    mine = Pseudonyms(SECRET, "research-de")
    assert {row["subject"] for row in table} == {mine(sid) for sid in sids}
    assert {row["os"] for row in table} == {"HarmonyOS"}
    assert {row["app_version"] for row in table} == {"3.8.1"}
    assert set(pq.read_table(out).column_names) == {
        "subject",
        "type",
        "ts",
        *(f.name for f in CAT.export_fields("account_security", free_text=True)),
    }
    # a purpose with nothing to say but that an event happened: subject, type, hour
    location, out = written["precise_location"]
    assert pq.read_table(out).column_names == ["subject", "type", "ts"]
    assert location.rows == 3  # the searches, which carried a position
    # the file says what it is
    meta = json.loads(pq.read_schema(out).metadata[b"gateway.export"])
    assert meta["recipient"] == "research-de" and meta["policy_version"] == CURRENT


def test_free_text_leaves_only_for_a_recipient_that_takes_it(
    app: Flask, client: FlaskClient, files: Path
) -> None:
    sid = person(client)
    plain = exporter(app).run("personalization", "analytics-sg", files / "plain.parquet")
    rows = pq.read_table(plain.path).to_pylist()
    assert not set(rows[0]) & FREE_TEXT
    assert "螺丝" not in strings(cells(plain.path)) and "13800138000" not in strings(rows)
    assert {r["product"] for r in rows if r["type"] == "search"} == {"M3"}
    assert {r["category"] for r in rows if r["type"] == "search"} == {"BOLT"}
    assert plain.columns == tuple(
        f.name for f in CAT.export_fields("personalization", free_text=False)
    )

    told = exporter(app).run("personalization", "research-de", files / "text.parquet")
    rows = pq.read_table(told.path).to_pylist()
    assert {r["keyword"] for r in rows if r["type"] == "search"} == {"不锈钢螺丝"}
    assert {r["title"] for r in rows if r["type"] == "page_view"} == {"搜索: 螺丝"}
    # the same person, under each recipient's own pseudonym
    assert {r["subject"] for r in rows} == {Pseudonyms(SECRET, "research-de")(sid)}
    plain_rows = pq.read_table(plain.path).to_pylist()
    assert {r["subject"] for r in plain_rows} == {Pseudonyms(SECRET, "analytics-sg")(sid)}


def test_times_leave_to_the_hour_and_the_pseudonyms_stay_across_exports(
    app: Flask, client: FlaskClient, files: Path
) -> None:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=90)
    ts = when.isoformat().replace("+00:00", ".123Z")
    sid = person(client, ts=ts)
    first = exporter(app).run("personalization", "analytics-sg", files / "1.parquet")
    again = exporter(app).run("personalization", "analytics-sg", files / "2.parquet")
    rows = pq.read_table(first.path).to_pylist()
    search = next(r for r in rows if r["type"] == "search")
    assert search["ts"] == when.strftime("%Y-%m-%dT%H:00:00Z")
    for row in rows:
        assert row["ts"].endswith(":00:00Z") and len(row["ts"]) == 20
    assert pq.read_table(again.path).to_pylist() == rows  # stable across runs
    assert {r["subject"] for r in rows} == {Pseudonyms(SECRET, "analytics-sg")(sid)}
    assert (again.people, again.new_people, again.year_people) == (1, 0, 1)


def test_only_people_whose_consent_stands_now_are_exported(
    app: Flask, client: FlaskClient, r: Any, files: Path
) -> None:
    kept = person(client)
    withdrawn_sid, token = app_subject(client, personalization=True)
    resp = client.post(
        "/v1/batch",
        json={"events": [event("search", keyword="轴承", product="6204")]},
        headers={"X-Subject": token},
    )
    assert resp.get_json()["stored"] == 1
    stale = person(client)
    other = person(client, {"account_security": True})  # never granted personalisation
    # withdrawn on the APP
    resp = client.delete("/v1/consent", headers={"X-Subject": token})
    assert resp.status_code == 200, resp.get_json()
    # granted under a policy version older than personalisation's last change (as if the
    # store held a grant of 2018): the gateway's own rule says it no longer counts
    r.hset(K.consent(stale), "g:personalization", "1")

    done = exporter(app).run("personalization", "analytics-sg", files / "p.parquet")
    subjects = {row["subject"] for row in pq.read_table(done.path).to_pylist()}
    mine = Pseudonyms(SECRET, "analytics-sg")
    assert subjects == {mine(kept)}
    assert done.people == 1 and done.rows == 4
    assert mine(withdrawn_sid) not in subjects and mine(other) not in subjects
    security = exporter(app).run("account_security", "analytics-sg", files / "s.parquet")
    assert security.people == 3  # the others granted account security, and still do


def test_every_slot_group_is_read_a_page_at_a_time(
    app: Flask, client: FlaskClient, files: Path
) -> None:
    sids = [person(client) for _ in range(12)]
    assert len({K.tag(sid) for sid in sids}) > 6  # spread over the groups
    small = exporter(app, page=1, row_group=5)
    done = small.run("personalization", "analytics-sg", files / "p.parquet")
    assert (done.rows, done.people) == (12 * 4, 12)
    assert pq.ParquetFile(done.path).num_row_groups == 10  # 48 rows, 5 a group
    whole = exporter(app).run("personalization", "analytics-sg", files / "w.parquet")
    key = ["subject", "type", "ts", "product"]

    def rows(path: Path) -> list[tuple[Any, ...]]:
        return sorted(tuple(r[k] for k in key) for r in pq.read_table(path).to_pylist())

    assert rows(done.path) == rows(whole.path)
    # in order of hour, pseudonym and type, whatever the slot groups they were read from:
    # the order tells nothing of the store's layout
    table = pq.read_table(done.path).to_pylist()
    order = [(r["ts"], r["subject"], r["type"]) for r in table]
    assert order == sorted(order)


def test_since_exports_what_was_stored_from_then_on(
    app: Flask, client: FlaskClient, files: Path
) -> None:
    person(client)
    since = int(datetime.now(UTC).timestamp() * 1000) + 5
    time.sleep(0.01)
    later = [person(client) for _ in range(2)]
    done = exporter(app).run("personalization", "analytics-sg", files / "p.parquet", since)
    mine = Pseudonyms(SECRET, "analytics-sg")
    subjects = {row["subject"] for row in pq.read_table(done.path).to_pylist()}
    assert subjects <= {mine(sid) for sid in later}


# ---------------------------------------------------------------------------- the ceiling
def test_the_ceiling_refuses_an_export_writes_nothing_and_counts_nothing(
    app: Flask, client: FlaskClient, r: Any, files: Path
) -> None:
    first = [person(client) for _ in range(2)]
    done = exporter(app, ceiling=3).run("personalization", "analytics-sg", files / "1.parquet")
    assert (done.people, done.new_people, done.year_people) == (2, 2, 2)
    year = done.year
    people = K.export_people("analytics-sg", year)
    mine = Pseudonyms(SECRET, "analytics-sg")
    assert r.smembers(people) == {mine(sid) for sid in first}
    left = year_end_ms(year) - datetime.now(UTC).timestamp() * 1000  # the year and a month
    assert abs(r.pttl(people) - left) < 60_000

    third = person(client)  # a third person: the recipient would reach 3 this year
    out = files / "2.parquet"
    with pytest.raises(ExportRefused) as refused:
        exporter(app, ceiling=3).run("personalization", "analytics-sg", out)
    assert refused.value.reason == "ceiling" and refused.value.exit_code == EXIT_CEILING
    assert "EXPORT_MAX_SUBJECTS_PER_YEAR=3" in str(refused.value)
    assert not out.exists()
    assert sorted(p.name for p in files.iterdir()) == ["1.parquet"]  # no partial file
    assert r.smembers(people) == {mine(sid) for sid in first}  # nobody counted
    assert not list(r.scan_iter("exp:{exports}:staged:*"))
    # another recipient has a year of its own
    other = exporter(app, ceiling=4).run("personalization", "research-de", files / "o.pq")
    assert (other.people, other.year_people) == (3, 3)

    # the known people count once: with room for one more, the same export goes through
    done = exporter(app, ceiling=4).run("personalization", "analytics-sg", out)
    assert (done.people, done.new_people, done.year_people) == (3, 1, 3)
    assert r.smembers(people) == {mine(sid) for sid in [*first, third]}
    log = [e for e in svc(app).store.exports.audit_since(0, 100)]
    refusal = next(fields for _, fields in log if fields["outcome"] == "refused")
    assert refusal["reason"] == "ceiling" and "sha256" not in refusal


def test_a_purpose_whose_people_alone_reach_the_ceiling_stops_early(
    app: Flask, client: FlaskClient, files: Path
) -> None:
    for _ in range(4):
        person(client)
    out = files / "p.parquet"
    with pytest.raises(ExportRefused) as refused:
        exporter(app, ceiling=2, page=1).run("personalization", "analytics-sg", out)
    assert refused.value.exit_code == EXIT_CEILING
    assert list(files.iterdir()) == []


# ---------------------------------------------------------------------------- the audit
def test_every_export_and_refusal_is_audited_and_listed_for_the_scope(
    app: Flask, client: FlaskClient, files: Path
) -> None:
    person(client)
    out = files / "p.parquet"
    done = exporter(app).run("personalization", "analytics-sg", out)
    assert done.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    for purpose, recipient, reason in [
        ("personalization", "elsewhere", "unknown_recipient"),
        ("necessary", "analytics-sg", "unknown_purpose"),
        ("nothing", "analytics-sg", "unknown_purpose"),
    ]:
        with pytest.raises(ExportRefused) as refused:
            exporter(app).run(purpose, recipient, files / "x.parquet")
        assert (refused.value.reason, refused.value.exit_code) == (reason, EXIT_REFUSED)
        named = "analytics-sg, research-de" if recipient == "elsewhere" else "personalization"
        assert named in str(refused.value)
    assert not (files / "x.parquet").exists()

    made = svc(app).apikeys
    admin = {"Authorization": "Bearer " + made.create("privacy office", ["exports_admin"])}
    other = {"Authorization": "Bearer " + made.create("marketing", ["audiences_admin"])}
    assert client.get("/v1/exports").status_code == 401
    assert client.get("/v1/exports", headers=other).status_code == 401
    resp = client.get("/v1/exports", headers=admin)
    assert resp.status_code == 200, resp.get_json()
    entries = resp.get_json()["exports"]
    assert [(e["outcome"], e.get("reason")) for e in entries] == [
        ("exported", None),
        ("refused", "unknown_recipient"),
        ("refused", "unknown_purpose"),
        ("refused", "unknown_purpose"),
    ]
    first = entries[0]
    assert first["sha256"] == done.sha256 and first["id"] == done.id
    assert (first["recipient"], first["purpose"], first["rows"], first["people"]) == (
        "analytics-sg",
        "personalization",
        4,
        1,
    )
    assert (first["new_people"], first["year_people"], first["year"]) == (1, 1, done.year)
    assert first["since"] is None and first["until"] <= first["at"]
    assert first["columns"] == list(done.columns) and first["free_text"] is False
    assert first["file"] == "p.parquet"
    assert entries[1]["recipient"] == "elsewhere" and "rows" not in entries[1]
    # paged like the audience queries' log
    assert len(client.get("/v1/exports?limit=2", headers=admin).get_json()["exports"]) == 2
    later = client.get(f"/v1/exports?since={entries[1]['at']}", headers=admin).get_json()
    assert [e["id"] for e in later["exports"]] == [e["id"] for e in entries[1:]]
    assert client.get("/v1/exports?limit=0", headers=admin).status_code == 400
    assert client.get("/v1/exports?since=soon", headers=admin).status_code == 400


def test_an_export_over_an_existing_file_or_into_no_folder_is_refused(
    app: Flask, files: Path
) -> None:
    taken = files / "taken.parquet"
    taken.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        exporter(app).run("personalization", "analytics-sg", taken)
    assert taken.read_bytes() == b"mine"
    with pytest.raises(FileNotFoundError):
        exporter(app).run("personalization", "analytics-sg", files / "no" / "p.parquet")
    assert svc(app).store.exports.audit_since(0, 10) == []


def test_a_name_taken_while_exporting_keeps_the_recorded_file_under_its_temporary_name(
    app: Flask, client: FlaskClient, files: Path
) -> None:
    person(client)
    out = files / "p.parquet"

    class Racing(ParquetSink):
        def close(self) -> None:
            super().close()
            out.write_bytes(b"another's")  # someone took the name meanwhile

    s = svc(app)
    settings = Settings(recipients(RECIPIENTS), 100, lambda: SECRET)
    racing = Exporter(s.store.exports, s.catalogue, s.min_grant, settings, Racing)
    with pytest.raises(ExportUnpublished) as unpublished:
        racing.run("personalization", "analytics-sg", out)
    assert out.read_bytes() == b"another's"  # never written over
    (kept,) = [p for p in files.iterdir() if p != out]
    assert str(kept) in str(unpublished.value)
    (entry,) = [fields for _, fields in s.store.exports.audit_since(0, 10)]
    assert entry["sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()


def test_the_audit_keeps_five_years(
    app: Flask, client: FlaskClient, files: Path, r: redis.Redis
) -> None:
    """Entries older than the audit's five years go with the next export or refusal (the
    log holds no person, but it must not grow for ever either)."""
    from gateway.storage.exports import AUDIT_KEEP_MS
    from gateway.storage.keys import Keys

    r.delete(Keys.EXPORTS_AUDIT)
    old_ms = int(time.time() * 1000) - AUDIT_KEEP_MS - 86_400_000
    r.xadd(Keys.EXPORTS_AUDIT, {"outcome": "exported"}, id=f"{old_ms}-0")
    recent_ms = int(time.time() * 1000) - AUDIT_KEEP_MS + 86_400_000
    r.xadd(Keys.EXPORTS_AUDIT, {"outcome": "exported"}, id=f"{recent_ms}-0")
    with pytest.raises(ExportRefused):
        exporter(app).run("personalization", "elsewhere", files / "x.parquet")
    person(client)
    exporter(app).run("personalization", "analytics-sg", files / "p.parquet")
    ids = [entry_id for entry_id, _ in r.xrange(Keys.EXPORTS_AUDIT)]
    assert len(ids) == 3 and ids[0] == f"{recent_ms}-0"  # the old one went, the rest stay
