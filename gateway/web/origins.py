"""Which web origins may write, and the CORS answers that go with it.

A consent can only be given by the person's own browser: a state-changing request from an
origin that is neither the gateway's own nor configured in ``ALLOWED_ORIGINS`` is refused
before it records anything, so no other site can forge an "accept all". Browsers that send
no ``Origin`` still send ``Sec-Fetch-Site``; a cross-site one without an allowed origin is
refused too. Clients that send neither (the APP, servers) are not browsers and carry their
own token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Request, Response

from ..core.errors import CrossSiteRefused

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALLOW_HEADERS = "Content-Type, X-Subject, X-Consent"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"


PAGE_DESTS = frozenset({"document", "iframe", "frame"})  # Sec-Fetch-Dest of a page load


def is_page_load(mode: str | None, dest: str | None, accept: str | None) -> bool:
    """The browser is loading a page (``Sec-Fetch-Mode: navigate``, a document or frame
    destination), or, without fetch metadata, asks for HTML as only a page load does.

    A beacon is an image: loaded as a page it was started by a link, a form or a script's
    ``location`` change, which another site can make and which carries ``SameSite=Lax``
    cookies; such a request writes nothing."""
    return mode == "navigate" or dest in PAGE_DESTS or "text/html" in (accept or "")


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
        refused = self.refusal(
            request.headers.get("Origin"),
            request.headers.get("Sec-Fetch-Site"),
            lambda: request.host_url,
        )
        if refused is not None:
            raise refused

    def refusal(
        self, origin: str | None, fetch_site: str | None, host_url: Callable[[], str]
    ) -> CrossSiteRefused | None:
        """Why a write with these ``Origin`` and ``Sec-Fetch-Site`` values is another site's
        (None when it is not); ``host_url`` (the gateway's own) is asked only for an origin."""
        if origin is not None:
            if not self.permits_at(host_url(), origin):
                return CrossSiteRefused(
                    f"origin {origin!r} may not write here; nothing was recorded",
                    fields={"origin": origin},
                )
            return None
        if fetch_site == "cross-site":
            return CrossSiteRefused(
                "cross-site request without an allowed origin; nothing was recorded"
            )
        return None

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
