"""Which web origins may write, and the CORS answers that go with it.

A consent can only be given by the person's own browser: a state-changing request from an
origin that is neither the gateway's own nor configured in ``ALLOWED_ORIGINS`` is refused
before it records anything, so no other site can forge an "accept all". Browsers that send
no ``Origin`` still send ``Sec-Fetch-Site``; a cross-site one without an allowed origin is
refused too. Clients that send neither (the APP, servers) are not browsers and carry their
own token.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Request, Response

from .errors import Forbidden

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALLOW_HEADERS = "Content-Type, X-Subject, X-Consent"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"


class CrossSiteRefused(Forbidden):
    code = "cross_site_refused"


def _normalise(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class OriginPolicy:
    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(_normalise(o) for o in allowed if o.strip())

    def permits(self, request: Request, origin: str) -> bool:
        return self.permits_at(request.host_url, origin)

    def permits_at(self, host_url: str, origin: str) -> bool:
        origin = _normalise(origin)
        return origin in self.allowed or origin == _normalise(host_url)

    def check_write(self, request: Request) -> None:
        """Refuse a state-changing browser request that another site made."""
        origin = request.headers.get("Origin")
        if origin is not None:
            if not self.permits(request, origin):
                raise CrossSiteRefused(
                    f"origin {origin!r} may not write here; nothing was recorded",
                    fields={"origin": origin},
                )
            return
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            raise CrossSiteRefused(
                "cross-site request without an allowed origin; nothing was recorded"
            )

    def add_cors(self, request: Request, resp: Response) -> None:
        vary = resp.headers.get("Vary")
        if not vary:  # (werkzeug's resp.vary parses and rebuilds the header: slower)
            resp.headers["Vary"] = "Origin"
        elif "origin" not in vary.lower():
            resp.headers["Vary"] = vary + ", Origin"
        origin = request.headers.get("Origin")
        for name, value in self.cors_headers(origin, request.host_url, request.method):
            resp.headers[name] = value

    def cors_headers(self, origin: str | None, host_url: str, method: str) -> list[tuple[str, str]]:
        """The CORS headers for a request from ``origin``: none unless it is allowed."""
        if origin is None or not self.permits_at(host_url, origin):
            return []
        out = [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
        ]
        if method == "OPTIONS":
            out += [
                ("Access-Control-Allow-Methods", ALLOW_METHODS),
                ("Access-Control-Allow-Headers", ALLOW_HEADERS),
                ("Access-Control-Max-Age", "600"),
            ]
        return out
