"""Rate limits: token buckets kept in the store, shared by every worker and gateway.

Without a front that limits requests, one address could make thousands of subjects a minute
and one subject thousands of ledger entries (measured before these limits: 2,000 subjects
in seconds, 9,689 entries in 22 s). Buckets bound that, the per-subject ones checked inside
the script that writes (no round trip of their own), the per-address ones in one script call
before a consent write or a new subject. Their clock is the store's:

* ``new_subjects``: per client address, for ``POST /v1/subjects`` and a subject's first
  ledger entry. IPv6 addresses count per /64 (one host's usual allocation), and the address
  is kept only as a keyed hash, for the minutes its bucket lives.
* ``ledger_writes``: per subject, and ``address_ledger_writes``: per client address, for
  ``POST``/``DELETE /v1/consent``, except a write that withdraws something granted:
  withdrawing stays as easy as granting. (Per subject alone, an address could write as much
  as its new subjects times their allowance.)
* ``events``: per subject, a token per event stored.

The defaults are far above what a person does (docs/configuration.md gives the reasoning);
``GATEWAY_RATE_LIMITS=off`` turns all three off for load tests or behind a front that
limits already. Over a limit the answer is 429 with ``Retry-After``, nothing stored.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
from collections.abc import Mapping
from typing import Any

from .errors import OverLimit, RateLimited
from .records import Bucket, Limits


def limits_from_config(cfg: Mapping[str, Any]) -> Limits | None:
    """The configured limits, or None when ``RATE_LIMITS`` is off."""
    if not cfg["RATE_LIMITS"]:
        return None
    limits = Limits(
        new_subjects=Bucket(cfg["RATE_NEW_SUBJECTS_BURST"], cfg["RATE_NEW_SUBJECTS_PER_HOUR"]),
        ledger_writes=Bucket(cfg["RATE_LEDGER_BURST"], cfg["RATE_LEDGER_PER_HOUR"]),
        events=Bucket(cfg["RATE_EVENTS_BURST"], cfg["RATE_EVENTS_PER_HOUR"]),
        address_ledger_writes=Bucket(
            cfg["RATE_ADDRESS_LEDGER_BURST"], cfg["RATE_ADDRESS_LEDGER_PER_HOUR"]
        ),
    )
    for name, bucket in (
        ("RATE_NEW_SUBJECTS", limits.new_subjects),
        ("RATE_LEDGER", limits.ledger_writes),
        ("RATE_EVENTS", limits.events),
        ("RATE_ADDRESS_LEDGER", limits.address_ledger_writes),
    ):
        if bucket.burst < 1 or bucket.per_hour < 1:
            raise ValueError(f"{name}_BURST and {name}_PER_HOUR must be at least 1")
    largest = max(cfg["MAX_EVENTS_PER_BATCH"], cfg["MAX_EVENTS_PER_REQUEST"])
    if limits.events.burst < largest:
        raise ValueError(
            f"RATE_EVENTS_BURST ({limits.events.burst}) must hold the largest request "
            f"({largest} events), or that request could never be stored"
        )
    return limits


def refusal(over: OverLimit) -> RateLimited:
    """The 429 answer for a bucket that was empty."""
    seconds = max(1, math.ceil(over.wait_ms / 1000))
    what = {
        "new_subjects": "too many new subjects from this address",
        "ledger_writes": "too many consent changes for this subject",
        "address_ledger_writes": "too many consent changes from this address",
        "events": "too many events for this subject",
    }.get(over.limit, over.limit)
    return RateLimited(
        f"{what}; nothing was stored, retry in {seconds} s",
        fields={"limit": over.limit, "retry_after_s": seconds},
        retry_after=seconds,
    )


class AddressKeys:
    """The name of a client address's bucket: a keyed hash of the address (IPv4, IPv4 mapped
    into IPv6 as IPv4, IPv6 by its /64), so the store never holds the address itself."""

    def __init__(self, secret: str | bytes) -> None:
        self._key = secret.encode() if isinstance(secret, str) else secret

    def __call__(self, address: str | None) -> str:
        mac = hmac.new(self._key, b"gateway.address:" + _prefix(address).encode(), "sha256")
        return mac.hexdigest()[:32]


def _prefix(address: str | None) -> str:
    try:
        ip: Any = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return address or ""
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
