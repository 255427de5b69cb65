"""The hash chain: any edit, removal or reordering is detected; receipts authenticate."""

from __future__ import annotations

import pytest

from gateway.ledger import Receipts, build_entry, check_chain


def chain(n: int) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    prev = ""
    for i in range(n):
        e = build_entry(
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
    assert check_chain(chain(4)).intact


@pytest.mark.parametrize("field", ["purposes", "time", "policy_version", "source", "subject"])
def test_edit_is_detected(field: str) -> None:
    entries = chain(3)
    entries[1] = dict(entries[1], **{field: entries[1][field] + "x"})
    result = check_chain(entries)
    assert not result.intact
    assert "entry 1 was altered" in result.problems[0]


def test_removal_and_reorder_are_detected() -> None:
    entries = chain(3)
    assert not check_chain([entries[0], entries[2]]).intact
    assert not check_chain([entries[1], entries[0], entries[2]]).intact


def test_rehashed_edit_breaks_the_next_link() -> None:
    entries = chain(3)
    forged = build_entry(
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
    assert "entry 2 does not link" in result.problems[0]


def test_receipts_authenticate_with_rotated_keys() -> None:
    entry = chain(1)[0]
    receipt = Receipts(["old"]).issue(entry, "1-0")
    assert receipt["hash"] == entry["hash"] and receipt["purposes"] == {"personalization": True}
    assert Receipts(["new", "old"]).authentic(receipt["id"], receipt["hash"], receipt["signature"])
    assert not Receipts(["new"]).authentic(receipt["id"], receipt["hash"], receipt["signature"])
    assert not Receipts(["old"]).authentic(receipt["id"], "0" * 64, receipt["signature"])
