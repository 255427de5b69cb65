"""The hash chain: any edit, removal or reordering is detected, the newest entries too."""

from __future__ import annotations

import pytest

from gateway.core.ledger import HASHED, Head, build_entry, check_chain, entry_hash


def chain(n: int) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    prev = ""
    for i in range(n):
        e = build_entry(
            seq=i + 1,
            receipt_id=f"r{i}",
            subject="s" * 32,
            time=f"2026-11-25T00:00:0{i}Z",
            policy_version="v",
            purposes={"personalization": i % 2 == 0},
            source="banner",
            action="consent",
            prev=prev,
        )
        out.append(e)
        prev = e["hash"]
    return out


def test_intact_chain() -> None:
    entries = chain(4)
    assert check_chain(entries).intact
    head = Head(4, entries[-1]["hash"])
    assert check_chain(entries, head=head, length=4).intact


def test_the_hash_covers_every_field() -> None:
    entry = chain(1)[0]
    assert set(HASHED) | {"hash"} == set(entry)
    for field in HASHED:
        assert entry_hash(dict(entry, **{field: entry[field] + "x"})) != entry["hash"], field


@pytest.mark.parametrize(
    "field", ["purposes", "time", "policy_version", "source", "subject", "action"]
)
def test_edit_is_detected(field: str) -> None:
    entries = chain(3)
    entries[1] = dict(entries[1], **{field: entries[1][field] + "x"})
    result = check_chain(entries)
    assert not result.intact
    assert "entry 2 was altered" in result.problems[0]


def test_removal_and_reorder_are_detected() -> None:
    entries = chain(3)
    assert not check_chain([entries[0], entries[2]]).intact
    assert not check_chain([entries[1], entries[0], entries[2]]).intact


def test_removing_the_newest_entries_is_detected_by_the_head() -> None:
    entries = chain(3)
    head = Head(3, entries[-1]["hash"])
    assert check_chain(entries[:2]).intact  # the chain alone cannot tell
    result = check_chain(entries[:2], head=head, length=2)
    assert not result.intact
    assert result.problems == [
        "entry 3 (the newest) is missing: the ledger holds 2 of the 3 entries its head records"
    ]
    two = check_chain(entries[:1], head=head, length=1)
    assert "entries 2-3 (the newest) are missing" in two.problems[0]


def test_a_replaced_newest_entry_is_not_the_head() -> None:
    entries = chain(3)
    head = Head(3, entries[-1]["hash"])
    other = build_entry(
        seq=3,
        receipt_id="forged",
        subject="s" * 32,
        time="2026-11-25T00:00:09Z",
        policy_version="v",
        purposes={"personalization": True},
        source="banner",
        action="consent",
        prev=entries[1]["hash"],
    )
    result = check_chain([*entries[:2], other], head=head, length=3)
    assert result.problems == ["entry 3 is not the head the consent state records"]


def test_entries_added_outside_the_gateway_are_detected() -> None:
    entries = chain(3)
    result = check_chain(entries, head=Head(2, entries[1]["hash"]), length=3)
    assert "entries 3-3 were added outside the gateway" in result.problems[0]


def test_a_page_is_checked_against_the_entry_before_it() -> None:
    entries = chain(4)
    head = Head(4, entries[-1]["hash"])
    assert check_chain(entries[2:], first=3, prev=entries[1]["hash"], head=head, length=4).intact
    wrong = check_chain(entries[2:], first=3, prev=entries[0]["hash"], head=head, length=4)
    assert wrong.problems == ["entry 3 does not link to the entry before it"]
    moved = check_chain(entries[2:], first=2, prev=entries[1]["hash"])
    assert "entry 2 is out of place (it says it is entry 3)" in moved.problems


def test_rehashed_edit_breaks_the_next_link() -> None:
    entries = chain(3)
    forged = build_entry(
        seq=2,
        receipt_id="r1",
        subject="s" * 32,
        time=entries[1]["time"],
        policy_version="v",
        purposes={"personalization": True},
        source="banner",
        action="consent",
        prev=entries[0]["hash"],
    )
    result = check_chain([entries[0], forged, entries[2]])
    assert not result.intact
    assert "entry 3 does not link" in result.problems[0]


def test_missing_fields_are_named() -> None:
    entries = chain(2)
    del entries[1]["source"]
    assert check_chain(entries).problems == ["entry 2 is missing fields"]
