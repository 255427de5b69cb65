"""The consent ledger's hash chain: entries, their hashes, and the checks of a chain.

Each entry holds its position (``seq``, from 1) and the hash of the one before it, and its
own hash covers every field it holds, so an edited, removed or reordered entry breaks the
chain. The chain's head (its length and the last entry's hash) is kept with the consent
state, so removing the newest entries (a withdrawal, say) is seen too: a chain that merely
stops early would otherwise look whole. Receipts, the signed copies handed to the person,
are in ``receipts.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GENESIS = ""
# The fields an entry's hash covers, in this order: every field of the entry but the hash.
HASHED = (
    "seq",
    "receipt_id",
    "subject",
    "time",
    "policy_version",
    "purposes",
    "source",
    "action",
    "prev",
)


def entry_hash(entry: Mapping[str, str]) -> str:
    canonical = json.dumps([entry[k] for k in HASHED], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def purposes_text(purposes: Mapping[str, bool]) -> str:
    """The decisions as an entry holds them: a JSON object, keys sorted, no spaces."""
    return json.dumps(dict(sorted(purposes.items())), separators=(",", ":"))


def build_entry(
    *,
    seq: int,
    receipt_id: str,
    subject: str,
    time: str,
    policy_version: str,
    purposes: Mapping[str, bool],
    source: str,
    action: str,
    prev: str,
) -> dict[str, str]:
    entry = {
        "seq": str(seq),
        "receipt_id": receipt_id,
        "subject": subject,
        "time": time,
        "policy_version": policy_version,
        "purposes": purposes_text(purposes),
        "source": source,
        "action": action,
        "prev": prev,
    }
    entry["hash"] = entry_hash(entry)
    return entry


def entry_of_receipt(receipt: Mapping[str, Any]) -> dict[str, str] | None:
    """The ledger entry a receipt speaks for, rebuilt from the receipt as given (its ``hash``
    is the receipt's, to compare with ``entry_hash``); None when a field is missing or of the
    wrong type."""
    try:
        entry = {
            "seq": receipt["entry_id"],
            "receipt_id": receipt["id"],
            "subject": receipt["subject"],
            "time": receipt["time"],
            "policy_version": receipt["policy_version"],
            "source": receipt["source"],
            "action": receipt["action"],
            "prev": receipt["prev"],
            "hash": receipt["hash"],
        }
        purposes = receipt["purposes"]
    except (KeyError, TypeError):
        return None
    if not all(isinstance(v, str) for v in entry.values()) or not isinstance(purposes, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, bool) for k, v in purposes.items()):
        return None
    entry["purposes"] = purposes_text(purposes)
    return entry


@dataclass
class ChainCheck:
    intact: bool
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Head:
    """The chain's head as the consent state records it: its length and last hash."""

    length: int
    hash: str


def check_chain(
    entries: Sequence[Mapping[str, str]],
    *,
    first: int = 1,
    prev: str = GENESIS,
    head: Head | None = None,
    length: int | None = None,
) -> ChainCheck:
    """Recompute every hash and link of ``entries`` (positions ``first``...), the first linking
    to ``prev``; name each entry that does not fit.

    With ``head`` (from the consent state) and ``length`` (how many entries the ledger holds),
    also check that the ledger ends where the state says it does; when ``entries`` reach the
    end, that the last one is the head.
    """
    problems: list[str] = []
    for i, e in enumerate(entries, start=first):
        if any(k not in e for k in (*HASHED, "hash")):
            problems.append(f"entry {i} is missing fields")
            prev = e.get("hash", "")
            continue
        if e["seq"] != str(i):
            problems.append(f"entry {i} is out of place (it says it is entry {e['seq']})")
        if e["prev"] != prev:
            problems.append(f"entry {i} does not link to the entry before it")
        if entry_hash(e) != e["hash"]:
            problems.append(f"entry {i} was altered after it was written")
        prev = e["hash"]
    if head is not None and length is not None:
        if length < head.length:
            gone = (
                f"entry {head.length} (the newest) is"
                if head.length - length == 1
                else f"entries {length + 1}-{head.length} (the newest) are"
            )
            problems.append(
                f"{gone} missing: the ledger holds {length} of the {head.length} entries "
                "its head records"
            )
        elif length > head.length:
            problems.append(
                f"the ledger holds {length} entries but its head records {head.length}: "
                f"entries {head.length + 1}-{length} were added outside the gateway"
            )
        elif entries and first + len(entries) - 1 == length and prev != head.hash:
            problems.append(f"entry {length} is not the head the consent state records")
    return ChainCheck(not problems, problems)
