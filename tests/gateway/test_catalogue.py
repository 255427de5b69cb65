"""The catalogue: coherent, versioned, and the single source of what may be stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core import catalogue
from gateway.core.catalogue import CatalogueError

from ..helpers import CURRENT, ORIGINAL


@pytest.fixture(scope="module")
def cat() -> catalogue.Catalogue:
    return catalogue.load()


def test_two_versions_and_the_current_one_is_last(cat: catalogue.Catalogue) -> None:
    assert [v.version for v in cat.versions] == [ORIGINAL, CURRENT]
    assert cat.current.version == CURRENT


def test_changed_purposes_are_derived_from_field_history(cat: catalogue.Catalogue) -> None:
    # the region fields entered personalisation in the current version, nothing else changed
    assert cat.changed_by(CURRENT) == ["personalization"]
    assert set(cat.changed_by(ORIGINAL)) == set(cat.purposes)
    assert cat.last_change["personalization"] == 1
    assert cat.last_change["account_security"] == 0


def test_every_design_field_has_a_purpose_and_clause(cat: catalogue.Catalogue) -> None:
    design = {
        "url",
        "referrer",
        "title",
        "keyword",
        "product",
        "model",
        "target",
        "drawing_id",
        "format",
        "action",
        "quantity",
        "price",
        "quote_id",
        "channel",
        "topic",
        "software",
        "screen",
        "ip",
        "browser",
        "browser_version",
        "os",
        "os_version",
        "device_brand",
        "device_model",
        "device_id",
        "carrier",
        "is_bot",
        "gps",
        "country",
        "province",
        "city",
    }
    assert design <= set(cat.fields)
    for f in cat.fields.values():
        assert f.clause and f.purpose in cat.purposes
        assert not cat.purposes[f.purpose].always_on


def test_gps_is_sensitive_and_separate(cat: catalogue.Catalogue) -> None:
    gps = cat.fields["gps"]
    assert gps.purpose == "precise_location" and gps.sensitive
    assert cat.purposes["precise_location"].sensitive


def test_purpose_depends_on_event_type(cat: catalogue.Catalogue) -> None:
    assert cat.purpose_of("search", "product") == "personalization"
    assert cat.purpose_of("design_usage", "product") == "account_security"
    assert cat.purpose_of("page_view", "ip") == "account_security"
    assert cat.purpose_of("page_view", "gps") == "precise_location"


def test_policy_document_shape(cat: catalogue.Catalogue) -> None:
    doc = cat.policy_document()
    assert doc["version"] == CURRENT and doc["effective"] == CURRENT
    assert [h["version"] for h in doc["history"]] == [CURRENT, ORIGINAL]
    assert doc["history"][0]["changed"] == ["personalization"]
    perso = doc["purposes"]["personalization"]
    assert perso["retention_days"] == cat.purposes["personalization"].retention_days
    assert perso["fields"]["city"]["since"] == CURRENT
    assert (
        "product" in perso["fields"] and "product" in doc["purposes"]["account_security"]["fields"]
    )
    assert doc["purposes"]["necessary"]["always_on"] is True
    assert doc["purposes"]["necessary"]["fields"] == {}


BROKEN = {
    "unknown purpose": (
        '[fields.x]\ntype="string"\npurpose="nope"\nclause="1"\nsource="event"\n',
        "unknown purpose",
    ),
    "unknown type": (
        '[fields.x]\ntype="blob"\npurpose="personalization"\nclause="1"\nsource="event"\n',
        "unknown type",
    ),
    "clause that cannot be cited": (
        '[fields.x]\ntype="string"\npurpose="personalization"\nclause="2.3"\nsource="event"\n',
        "field x: clause '2.3': cannot cite",
    ),
    "unknown asked_at": (
        '[purposes.y]\nclause="2(3)"\nretention_days=1\nasked_at="popup"\n',
        "asked_at is one of",
    ),
    "a label of no value": (
        '[traits.size]\npurpose="personalization"\nclause="2(1)"\nvalues=["1-19"]\n'
        '[traits.size.labels]\n"20-99" = { zh = "20–99 人", en = "20–99 people" }\n',
        "labels name its values",
    ),
    "a label without English": (
        '[traits.size]\npurpose="personalization"\nclause="2(1)"\nvalues=["1-19"]\n'
        '[traits.size.labels]\n"1-19" = { zh = "1–19 人" }\n',
        "each in zh and en",
    ),
    "unknown version": (
        '[fields.x]\ntype="string"\npurpose="personalization"\nclause="1"\n'
        'source="event"\nsince="2030-01-01"\n',
        "unknown policy version",
    ),
}

BASE = """
[[versions]]
version = "v1"
[purposes.necessary]
clause = "Note 1"
retention_days = 1
always_on = true
[purposes.personalization]
clause = "2(3)"
retention_days = 1
[events.page_view]
fields = []
"""


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_incoherent_catalogue_fails_at_load(tmp_path: Path, case: str) -> None:
    text, message = BROKEN[case]
    path = tmp_path / "c.toml"
    path.write_text(BASE + text)
    with pytest.raises(CatalogueError, match=message):
        catalogue.load(path)


@pytest.mark.parametrize(
    ("clause", "zh", "en"),
    [
        ("2(2) items 2-4", "第二条第（二）款第2–4项", "2(2) items 2–4"),
        ("2(2) item 1", "第二条第（二）款第1项", "2(2) item 1"),
        ("2(3), 3(2) item 1", "第二条第（三）款、第三条第（二）款第1项", "2(3), 3(2) item 1"),
        ("Notes 1-2", "注1–2", "Notes 1–2"),
        ("4", "第四条", "4"),
        ("12(1)", "第十二条第（一）款", "12(1)"),
    ],
)
def test_clauses_are_cited_as_each_policy_numbers_them(clause: str, zh: str, en: str) -> None:
    assert catalogue.cite(clause) == {"zh": zh, "en": en}


def test_the_policy_document_cites_clauses_and_says_where_purposes_are_asked(
    cat: catalogue.Catalogue,
) -> None:
    doc = cat.policy_document()
    assert doc["purposes"]["account_security"]["clause_text"]["zh"] == "第二条第（二）款第2–4项"
    assert doc["purposes"]["necessary"]["clause_text"]["zh"] == "注1–2"
    asked = {name: p["asked_at"] for name, p in doc["purposes"].items()}
    assert asked.pop("saved_login") == "login" and set(asked.values()) == {"banner"}


def test_minimal_catalogue_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE)
    assert catalogue.load(path).current.version == "v1"


def test_a_device_field_is_never_exported_unless_its_entry_says_so(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    device = '[fields.{0}]\ntype="string"\npurpose="personalization"\nclause="2(3)"\n'
    path.write_text(
        BASE
        + device.format("imei")
        + 'source="device"\n'
        + device.format("screen")
        + 'source="device"\nexport="yes"\n'
        + device.format("note")
        + 'source="event"\n'
    )
    fields = catalogue.load(path).fields
    assert fields["imei"].export == "never"  # a new device identifier leaks nothing by default
    assert fields["screen"].export == "yes" and fields["note"].export == "yes"
