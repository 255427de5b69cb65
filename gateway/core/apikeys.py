"""Server API keys: for the platform's senders and backend, never for browsers or the APP.

A key is shown once, when it is created (``gateway apikey create``); the gateway keeps only
its SHA-256 and finds a key by that digest alone. There is no key id to look up first and no
prefix compared character by character, so a wrong key costs the same work whichever part of
it is wrong, and the stored digests are of no use to whoever reads the store.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidApiKey
from .ports import KeyStore
from .records import ApiKeyRecord

PREFIX = "gwk_"
SCOPES = (
    "senders",
    "saved_login",
    "erasure",
    "accounts",
    "audiences",
    "audiences_admin",
    "exports_admin",  # GET /v1/exports: the audit log of exports abroad
)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKeys:
    def __init__(self, store: KeyStore) -> None:
        self.store = store

    def create(self, name: str, scopes: list[str]) -> str:
        """A new key with ``scopes``; the only time the key itself is seen."""
        unknown = set(scopes) - set(SCOPES)
        if not scopes or unknown:
            raise ValueError(f"scopes must be among {SCOPES}, got {scopes}")
        if not name or len(name) > 100:
            raise ValueError("a key needs a name of at most 100 characters")
        key = PREFIX + secrets.token_urlsafe(32)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        self.store.add(ApiKeyRecord(name, tuple(sorted(set(scopes))), created, digest(key)))
        return key

    def list(self) -> list[dict[str, Any]]:
        """Every key's name, scopes, creation time and the first characters of its digest."""
        return [
            {
                "digest": r.digest[:12],
                "name": r.name,
                "scopes": ",".join(r.scopes),
                "created": r.created,
            }
            for r in self.store.all()
        ]

    def revoke(self, digest_prefix: str) -> int:
        """Remove the keys whose digest starts with ``digest_prefix`` (as ``list`` shows it)."""
        if len(digest_prefix) < 8:
            raise ValueError("give at least 8 characters of the digest")
        return self.store.remove(
            [r.digest for r in self.store.all() if r.digest.startswith(digest_prefix)]
        )

    def check(self, authorization: str | None, scope: str) -> str:
        """The name of the key an ``Authorization: Bearer`` header carries, if it holds
        ``scope``; else InvalidApiKey (one answer for a missing, unknown or wrong key)."""
        return self.identify(authorization, scope).name

    def by_digest(self, key_digest: str, scope: str) -> ApiKeyRecord | None:
        """The key of a digest a session named, if it still exists and holds ``scope``."""
        found = self.store.find(key_digest)
        return found if found is not None and scope in found.scopes else None

    def identify(self, authorization: str | None, scope: str) -> ApiKeyRecord:
        """The record of the key the header carries, if it holds ``scope`` (as ``check``)."""
        scheme, _, key = (authorization or "").partition(" ")
        presented = key.strip() if scheme.lower() == "bearer" else ""
        found = self.store.find(digest(presented)) if presented else None
        if found is None or scope not in found.scopes:
            raise InvalidApiKey("a valid API key for this endpoint is required")
        return found
