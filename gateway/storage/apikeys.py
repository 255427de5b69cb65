"""Server API keys, by the SHA-256 of the key: ``apikey:{keys}:<digest>`` hashes (name,
scopes, creation time) and the set of every digest, one slot (``{keys}``) for both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from ..core.records import ApiKeyRecord
from .client import Client, translating
from .keys import Keys


class RedisKeyStore:
    def __init__(self, client: Client, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    @translating
    def add(self, record: ApiKeyRecord) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(
            self.keys.apikey(record.digest),
            mapping={
                "name": record.name,
                "scopes": ",".join(record.scopes),
                "created": record.created,
            },
        )
        pipe.sadd(self.keys.APIKEYS, record.digest)
        pipe.execute()

    @translating
    def find(self, digest: str) -> ApiKeyRecord | None:
        fields = cast("dict[str, str]", self.r.hgetall(self.keys.apikey(digest)))
        if not fields:
            return None
        scopes = tuple(s for s in fields.get("scopes", "").split(",") if s)
        return ApiKeyRecord(fields.get("name", ""), scopes, fields.get("created", ""), digest)

    @translating
    def all(self) -> list[ApiKeyRecord]:
        found = [self.find(d) for d in sorted(map(str, self.r.smembers(self.keys.APIKEYS)))]
        return [record for record in found if record is not None]

    @translating
    def remove(self, digests: Sequence[str]) -> int:
        for digest in digests:
            pipe = self.r.pipeline(transaction=False)
            pipe.delete(self.keys.apikey(digest))
            pipe.srem(self.keys.APIKEYS, digest)
            pipe.execute()
        return len(digests)
