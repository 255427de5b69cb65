"""HTTP to the gateway: one pooled ``httpx`` client per process.

A client made before ``fork`` is never used after it (its sockets are shared with the
parent): the first request in a new process opens a client of its own.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import httpx

from .errors import GatewayRefused, GatewayUnavailable
from .retry import retryable

SUBJECT_HEADER = "X-Subject"
CONSENT_HEADER = "X-Consent"  # the gateway's signed hint of the consent on record


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def error(self) -> GatewayRefused:
        err = self.body.get("error", {}) if isinstance(self.body, dict) else {}
        return GatewayRefused(
            self.status,
            str(err.get("code", "http_error")),
            str(err.get("message", "")),
            err.get("fields") if isinstance(err.get("fields"), dict) else None,
        )


class Transport:
    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 10.0,
        user_agent: str = "consent-gateway-sdk-py",
        verify: bool | str = True,
        gzip_min_bytes: int = 1024,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.user_agent = user_agent
        self.verify = verify
        self.gzip_min_bytes = gzip_min_bytes
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        # The latest X-Consent the gateway answered with: sent back with batches, it spares
        # the gateway a read of the consent (the gateway checks it is still current).
        self.consent_hint: str | None = None
        self._pid = os.getpid()
        _TRANSPORTS.add(self)

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                # After a fork the parent's client (and its sockets) is left alone.
                self._pid = os.getpid()
                self._client = httpx.Client(
                    base_url=self.endpoint,
                    timeout=self.timeout,
                    verify=self.verify,
                    headers={"User-Agent": self.user_agent},
                )
            return self._client

    def send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
    ) -> Reply:
        """One request; network failures raise GatewayUnavailable, HTTP errors come back."""
        headers: dict[str, str] = {}
        if token is not None:
            headers[SUBJECT_HEADER] = token
            if self.consent_hint is not None:
                headers[CONSENT_HEADER] = self.consent_hint
        content: bytes | None = raw
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
            if len(content) >= self.gzip_min_bytes:
                content = gzip.compress(content, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
        try:
            resp = self._http().request(method, path, content=content, headers=headers)
        except httpx.HTTPError as e:  # connect, read, write, pool timeouts and resets
            raise GatewayUnavailable(f"{method} {path}: {type(e).__name__}: {e}") from e
        hint = resp.headers.get(CONSENT_HEADER)
        if hint:
            self.consent_hint = hint
        try:
            parsed = resp.json() if resp.content else None
        except ValueError:
            parsed = None
        return Reply(resp.status_code, parsed, dict(resp.headers))

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """``send`` for calls that must succeed now: the body, or an SdkError."""
        reply = self.send(method, path, **kwargs)
        if reply.status < 300:
            return reply.body
        if retryable(reply.status):
            raise GatewayUnavailable(f"{method} {path}: HTTP {reply.status}", reply.status)
        raise reply.error()

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None

    def _after_fork(self) -> None:
        # The lock may have been held by another thread at the fork (building the client):
        # the child gets a fresh one, and leaves the parent's client alone.
        self._lock = threading.Lock()
        self._client = None
        self._pid = os.getpid()


_TRANSPORTS: weakref.WeakSet[Transport] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for transport in list(_TRANSPORTS):
        transport._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
