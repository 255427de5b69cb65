"""``GET /p.gif``: the web beacon, answered in front of Flask.

The beacon is the gateway's hottest path (one request per page view, from pages that may not
run the SDK) and its answer is always the same 43-byte GIF. Flask's request context, URL
adapters and hooks cost more CPU than the whole consent-gated store does, so this small
WSGI middleware answers ``GET``/``HEAD /p.gif`` itself, with the same parts the Flask views
use (identity, the consent hint, collect, metrics, CORS, cookies), and hands every other
request to Flask. It sits inside ProxyFix, so ``REMOTE_ADDR`` is already the client's.

The status tells a curious client what happened (``X-Error-Code`` names a refusal); the
body is the GIF whatever the outcome, so a page never shows a broken image.

No other site may write into a visitor's profile through the pixel. ``_vid`` is
``SameSite=Lax``, so another site's top-level navigation to ``/p.gif`` (a link, ``location``,
a GET form) would carry it. Before anything is read or stored (no event, no GPC withdrawal,
no cookie refreshed), 403 with the GIF for:

* another site's request: ``Sec-Fetch-Site: cross-site``, or an ``Origin`` that may not
  write, by the same rule as the JSON endpoints (``OriginPolicy.refusal``):
  ``cross_site_refused``. A ``same-site`` request is the site's own: the shop
  ``www.example.com`` embedding ``t.example.com/p.gif`` is the intended deployment, and only
  same-site pages get ``_vid`` on an image request anyway;
* a page load of any origin (``Sec-Fetch-Mode: navigate``, ``Sec-Fetch-Dest`` a document or a
  frame): a pixel is an image, never a page: ``navigation_refused``.

Requests without fetch metadata (curl, servers, browsers too old to send it) still count.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.sansio.http import parse_cookie
from werkzeug.wsgi import get_host

from ..core.caller import Caller, identify_from
from ..core.collection import Sender, collect
from ..core.consent import standing_refusal
from ..core.errors import (
    GatewayError,
    NavigationRefused,
    OverLimit,
    StorageUnavailable,
    TooManyParameters,
)
from ..core.metrics import method_label
from ..core.ratelimit import refusal
from ..core.tokens import CONSENT_COOKIE, OPTOUT_COOKIE, VID_COOKIE
from .collect import GIF, NO_STORE, refresh_cookie
from .identity import subject_cookie
from .origins import is_page_load

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .services import Services

log = logging.getLogger(__name__)

PATH = "/p.gif"
ENDPOINT = "collect.pixel"  # the metrics label, as for a Flask view
MAX_PARAMS = 64
ALLOW = "GET, HEAD, OPTIONS"
_FIXED = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(GIF))),
    ("Cache-Control", NO_STORE),
    ("Pragma", "no-cache"),
    ("Vary", "Origin"),
]


class PixelBeacon:
    """WSGI middleware: answers ``GET``/``HEAD /p.gif``; everything else goes to ``app``."""

    def __init__(self, app: WSGIApplication, svc: Services) -> None:
        self.app = app
        self.svc = svc

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        started = time.perf_counter()
        if method in ("GET", "HEAD"):
            status, headers = self._answer(environ)
            body = b"" if method == "HEAD" else GIF
        elif method == "OPTIONS":  # a CORS preflight (a fetch with X-Subject, say)
            status, headers, body = 200, [("Allow", ALLOW), ("Vary", "Origin")], b""
            headers += self._cors(environ, "OPTIONS")
        else:
            status, headers, body = _not_allowed(method)
        self._observe(method, status, started)
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, '')}", headers)
        return [body]

    def _answer(self, environ: WSGIEnvironment) -> tuple[int, list[tuple[str, str]]]:
        svc = self.svc
        headers = list(_FIXED)
        refused = self._refusal(environ)
        if refused is not None:
            headers.append(("X-Error-Code", refused.code))
            headers += self._cors(environ, "GET")
            return refused.status, headers
        status, code = 200, None
        who: Caller | None = None
        try:
            vid_cookie, consent_cookie, optout_cookie = _cookies(environ.get("HTTP_COOKIE"))
            svc.store.ready()  # one attribute read once the layout is checked
            svc.start_jobs()  # after it, as Flask's hooks for every other path: one read
            who = identify_from(svc.tokens, environ.get("HTTP_X_SUBJECT"), vid_cookie)
            event = svc.codec.from_query(*_event_source(environ))
            sender = Sender(
                who,
                environ.get("REMOTE_ADDR"),
                environ.get("HTTP_USER_AGENT", ""),
                consent_cookie,
                standing_refusal(svc.tokens, environ.get("HTTP_SEC_GPC"), optout_cookie),
            )
            done = collect(svc, sender, [event])
            fresh = refresh_cookie(svc, who, done.refresh)
            if fresh is not None:
                headers.append(("Set-Cookie", fresh))
            if "reason" in done.answer:  # what /v1/events says in its body
                headers.append(("X-Reason", done.answer["reason"]))
        except StorageUnavailable as e:  # down, hung, full, read-only...: nothing was stored
            log.warning("storage unavailable: %s", e.__cause__ or e)
            svc.metrics.child(svc.metrics.storage_errors, "pixel").inc()
            status, code = e.status, e.code
        except GatewayError as e:
            status, code = e.status, e.code
        except OverLimit as e:
            svc.metrics.child(svc.metrics.rate_limited, e.limit).inc()
            refused = refusal(e)
            status, code = refused.status, refused.code
            headers.append(("Retry-After", str(refused.retry_after)))
        except Exception:  # a bug: still a GIF, never a broken image or a traceback
            log.exception("pixel failed")
            status, code = 500, "internal_error"
        if code:
            headers.append(("X-Error-Code", code))
        if who is not None:
            vid = subject_cookie(svc.cookies, svc.tokens, who)
            if vid is not None:
                headers.append(("Set-Cookie", vid))
        headers += self._cors(environ, "GET")
        return status, headers

    def _refusal(self, environ: WSGIEnvironment) -> GatewayError | None:
        """Another site's request, or a page load: refused before anything is read."""
        refused = self.svc.origins.refusal(
            environ.get("HTTP_ORIGIN"),
            environ.get("HTTP_SEC_FETCH_SITE"),
            lambda: _host_url(environ),
        )
        if refused is not None:
            return refused
        if is_page_load(
            environ.get("HTTP_SEC_FETCH_MODE"),
            environ.get("HTTP_SEC_FETCH_DEST"),
            environ.get("HTTP_ACCEPT"),
        ):
            return NavigationRefused("the pixel is an image, not a page; nothing was recorded")
        return None

    def _cors(self, environ: WSGIEnvironment, method: str) -> list[tuple[str, str]]:
        origin = environ.get("HTTP_ORIGIN")
        if origin is None:
            return []
        return self.svc.origins.cors_headers(origin, _host_url(environ), method)

    def _observe(self, method: str, status: int, started: float) -> None:
        m = self.svc.metrics
        m.child(m.requests, ENDPOINT, method_label(method), str(status)).inc()
        m.child(m.latency, ENDPOINT).observe(time.perf_counter() - started)


CACHED_COOKIE_HEADER = 4096  # longer headers are parsed each time rather than kept


def _cookies(header: str | None) -> tuple[str | None, str | None, str | None]:
    """The ``_vid``, ``_consent`` and ``_optout`` values of a Cookie header, as Flask's
    ``request.cookies`` reads them (the header as the server decoded it: latin-1, so bytes
    that are not UTF-8 cannot fail here). A browser sends the same header with each of its
    beacons: parsed once (10 us) while it stays among the last few thousand seen. Only
    headers of ordinary size are kept, so the cache holds at most 4096 x 4 KiB."""
    if header is not None and len(header) > CACHED_COOKIE_HEADER:
        return _parse_cookies(header)
    return _cached_cookies(header)


def _parse_cookies(header: str | None) -> tuple[str | None, str | None, str | None]:
    cookies = parse_cookie(header)
    return cookies.get(VID_COOKIE), cookies.get(CONSENT_COOKIE), cookies.get(OPTOUT_COOKIE)


_cached_cookies = lru_cache(maxsize=4096)(_parse_cookies)


def _host_url(environ: WSGIEnvironment) -> str:
    return f"{environ.get('wsgi.url_scheme', 'http')}://{get_host(environ)}/"


def _event_source(environ: WSGIEnvironment) -> tuple[dict[str, str], dict[str, str]]:
    """The query parameters (first value of each) and the defaults a page view takes."""
    # The server hands the query over as latin-1; raw UTF-8 (unescaped) must come out right.
    query = environ.get("QUERY_STRING", "").encode("latin-1", "replace").decode("utf-8", "replace")
    try:
        pairs = parse_qsl(
            query,
            keep_blank_values=True,
            errors="replace",
            max_num_fields=MAX_PARAMS,
        )
    except ValueError as e:
        raise TooManyParameters(f"at most {MAX_PARAMS} query parameters") from e
    args: dict[str, str] = {}
    for k, v in pairs:
        args.setdefault(k, v)
    defaults = {"type": "page_view"}
    referrer = environ.get("HTTP_REFERER")
    if args.get("type", "page_view") == "page_view" and referrer:
        defaults["url"] = referrer
    return args, defaults


def _not_allowed(method: str) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps(
        {
            "error": {
                "code": "method_not_allowed",
                "message": f"{method} is not allowed on {PATH}; use GET",
            }
        }
    ).encode()
    return (
        405,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Allow", ALLOW),
            ("Vary", "Origin"),
        ],
        body,
    )


def install(app: Any, svc: Services) -> None:
    """Put the beacon in front of ``app``'s WSGI callable (before ProxyFix wraps both)."""
    inner: Callable[..., Iterable[bytes]] = app.wsgi_app
    app.wsgi_app = PixelBeacon(inner, svc)
