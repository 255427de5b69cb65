"""The marketers' dashboard's sessions: ``mks:{<session id>}`` holds the API key's digest
for the session's life (its TTL), and goes at sign-out. One key per session, in a slot of its
own, so the same code runs on a cluster."""

from __future__ import annotations

from typing import cast

from .client import Client, translating


def _key(session_id: str) -> str:
    return f"mks:{{{session_id}}}"


class RedisSessionStore:
    def __init__(self, client: Client) -> None:
        self.r = client

    @translating
    def put(self, session_id: str, digest: str, ttl_ms: int) -> None:
        self.r.set(_key(session_id), digest, px=ttl_ms)

    @translating
    def get(self, session_id: str) -> str | None:
        return cast("str | None", self.r.get(_key(session_id)))

    @translating
    def delete(self, session_id: str) -> None:
        self.r.delete(_key(session_id))
