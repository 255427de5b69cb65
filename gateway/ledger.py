"""The consent ledger's hash chain and receipts.

Each entry holds the hash of the one before it, and its own hash covers all of its fields,
so an edited, removed or reordered entry breaks the chain. The receipt handed to the person
carries the entry's hash and an HMAC signature: the gateway can later show both that it
issued the receipt and that the ledger still holds the entry unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, Signer

GENESIS = ""
# The fields an entry's hash covers, in this order; "hash" itself is stored beside them.
HASHED = ("receipt_id", "subject", "time", "policy_version", "purposes", "source", "action", "prev")


def entry_hash(entry: Mapping[str, str]) -> str:
    canonical = json.dumps([entry[k] for k in HASHED], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def build_entry(
    *,
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
        "receipt_id": receipt_id,
        "subject": subject,
        "time": time,
        "policy_version": policy_version,
        "purposes": json.dumps(dict(sorted(purposes.items())), separators=(",", ":")),
        "source": source,
        "action": action,
        "prev": prev,
    }
    entry["hash"] = entry_hash(entry)
    return entry


@dataclass
class ChainCheck:
    intact: bool
    problems: list[str] = field(default_factory=list)


def check_chain(entries: Sequence[Mapping[str, str]]) -> ChainCheck:
    """Recompute every hash and link; name each entry that does not fit."""
    problems = []
    prev = GENESIS
    for i, e in enumerate(entries):
        if any(k not in e for k in (*HASHED, "hash")):
            problems.append(f"entry {i} is missing fields")
            prev = e.get("hash", "")
            continue
        if e["prev"] != prev:
            problems.append(f"entry {i} does not link to the entry before it")
        if entry_hash(e) != e["hash"]:
            problems.append(f"entry {i} was altered after it was written")
        prev = e["hash"]
    return ChainCheck(not problems, problems)


class Receipts:
    """Builds and authenticates the receipts given for ledger entries."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        self._signer = Signer(
            list(reversed(list(keys))), salt="gateway.receipt", digest_method=hashlib.sha256
        )

    def issue(self, entry: Mapping[str, str], entry_id: str) -> dict[str, Any]:
        return {
            "id": entry["receipt_id"],
            "entry_id": entry_id,
            "subject": entry["subject"],
            "time": entry["time"],
            "policy_version": entry["policy_version"],
            "purposes": json.loads(entry["purposes"]),
            "source": entry["source"],
            "action": entry["action"],
            "prev": entry["prev"],
            "hash": entry["hash"],
            "signature": self._signature(entry["receipt_id"], entry["hash"]),
        }

    def _signature(self, receipt_id: str, entry_hash_: str) -> str:
        signed = self._signer.sign(f"{receipt_id}.{entry_hash_}").decode("ascii")
        return signed.rsplit(".", 1)[1]

    def authentic(self, receipt_id: str, entry_hash_: str, signature: str) -> bool:
        try:
            self._signer.unsign(f"{receipt_id}.{entry_hash_}.{signature}")
        except BadSignature:
            return False
        return True
