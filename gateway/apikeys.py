"""Server API keys: for the platform's senders and backend, never for browsers or the APP.

A key is shown once, when it is created (``gateway apikey create``); the gateway
keeps only its SHA-256 and finds a key by that digest alone (``apikey:<digest>``). There is
no key id to look up first and no prefix compared character by character, so a wrong key
costs the same work whichever part of it is wrong, and the stored digests are of no use to
whoever reads the store.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

import redis
from flask import request

from .errors import GatewayError
from .services import Services, services

PREFIX = "gwk_"
SCOPES = ("senders", "saved_login", "erasure")
INDEX = "apikeys"  # set of every key's digest, for listing


class InvalidApiKey(GatewayError):
    status = 401
    code = "invalid_api_key"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKeys:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def create(self, name: str, scopes: list[str]) -> str:
        """A new key with ``scopes``; the only time the key itself is seen."""
        unknown = set(scopes) - set(SCOPES)
        if not scopes or unknown:
            raise ValueError(f"scopes must be among {SCOPES}, got {scopes}")
        if not name or len(name) > 100:
            raise ValueError("a key needs a name of at most 100 characters")
        key = PREFIX + secrets.token_urlsafe(32)
        d = digest(key)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            f"apikey:{d}",
            mapping={
                "name": name,
                "scopes": ",".join(sorted(set(scopes))),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        pipe.sadd(INDEX, d)
        pipe.execute()
        return key

    def list(self) -> list[dict[str, Any]]:
        """Every key's name, scopes, creation time and the first characters of its digest."""
        out = []
        for d in sorted(self.r.smembers(INDEX)):
            fields = self.r.hgetall(f"apikey:{d}")
            if fields:
                out.append({"digest": d[:12], **fields})
        return out

    def revoke(self, digest_prefix: str) -> int:
        """Remove the keys whose digest starts with ``digest_prefix`` (as ``list`` shows it)."""
        if len(digest_prefix) < 8:
            raise ValueError("give at least 8 characters of the digest")
        gone = [d for d in self.r.smembers(INDEX) if d.startswith(digest_prefix)]
        for d in gone:
            self.r.delete(f"apikey:{d}")
            self.r.srem(INDEX, d)
        return len(gone)

    def check(self, authorization: str | None, scope: str) -> str:
        """The name of the key an ``Authorization: Bearer`` header carries, if it holds
        ``scope``; else InvalidApiKey (one answer for a missing, unknown or wrong key)."""
        scheme, _, key = (authorization or "").partition(" ")
        presented = key.strip() if scheme.lower() == "bearer" else ""
        fields = self.r.hgetall(f"apikey:{digest(presented)}") if presented else {}
        if not fields or scope not in fields.get("scopes", "").split(","):
            raise InvalidApiKey("a valid API key for this endpoint is required")
        return fields["name"]


def authorised(scope: str) -> Services:
    """The app's services, once the request's API key is found to hold ``scope``."""
    svc = services()
    svc.apikeys.check(request.headers.get("Authorization"), scope)
    return svc
