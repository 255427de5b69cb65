"""The marketers' dashboard (clause 3(2) item 1: statistics only): a page, its session, and
the audience queries on behalf of the signed-in key.

* ``GET /marketers``: the page (``templates/marketers.html``; its script and style are the
  content-hashed builds of ``sdk_js/src/marketers/``, named by ``dist/manifest.json``).
* ``POST /marketers/session`` ``{"key"}`` -> ``{"key": {"name"}, "csrf"}`` and the session
  cookie; ``GET`` the same for a standing session (401 ``not_signed_in`` without);
  ``DELETE`` signs out.
* ``GET /marketers/api/dimensions``, ``GET /marketers/api/account`` (budget, own recent
  queries), ``POST /marketers/api/estimate`` and ``/breakdown`` (as ``/v1/audiences/*``).

The key is typed once and exchanged for an HttpOnly, SameSite=Strict session cookie
(``core/sessions.py``); every write carries the session's CSRF token (``X-CSRF-Token``) and
must come from this origin. The queries are the API's own (``Audiences``): the same floor,
noise, budget, difference checks and audit, under the key's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request
from werkzeug.http import dump_cookie

from ..core.apikeys import digest
from ..core.audiences.service import Audiences
from ..core.errors import (
    CsrfFailed,
    NotFound,
    NotSignedIn,
    UnsupportedMediaType,
    ValidationFailed,
)
from ..core.records import ApiKeyRecord
from ..core.sessions import Session, Sessions, cookie_name
from .assets import dist_dir
from .payload import read_object
from .services import Services, services

bp = Blueprint("marketers", __name__)

SCOPE = "audiences"
PATH = "/marketers"
# The page runs only its own files: no inline script or style, no other origin, no frames.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@bp.after_request
def _own_origin_only(resp: Response) -> Response:
    """No other origin may embed or read what the dashboard answers (app.py adds no CORS
    headers under /marketers)."""
    resp.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _audiences(svc: Services) -> Audiences:
    if svc.audiences is None:
        raise NotFound("this gateway's catalogue has no audiences")
    return svc.audiences


def _built(dist: Path) -> dict[str, str]:
    """The hashed names of the dashboard's script and style. Read at each page load (a few
    hundred bytes; marketers load the page, not thousands of visitors), so a rebuild, which
    removes the old hashed files, is served at once."""
    try:
        manifest = json.loads((dist / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    return {k: str(manifest[k]) for k in ("marketers.js", "marketers.css") if k in manifest}


def _lang() -> str:
    asked = request.args.get("lang")
    if asked in ("zh", "en"):
        return asked
    best = request.accept_languages.best_match(["zh", "en"], default="zh")
    return best or "zh"


@bp.get(PATH)
def page() -> Response:
    built = _built(dist_dir())
    if len(built) < 2:
        raise NotFound("the dashboard is not built (run: cd sdk_js && npm ci && npm run build)")
    body = render_template(
        "marketers.html",
        lang=_lang(),
        script=f"/{built['marketers.js']}",
        style=f"/{built['marketers.css']}",
    )
    resp = Response(body, 200, mimetype="text/html")
    resp.headers.update(SECURITY_HEADERS)
    return resp


# ---------------------------------------------------------------------- the session
def _same_origin() -> None:
    """Refuse what another site's page asks, read or write (the cookie is SameSite=Strict as
    well, which a sibling site of the same registrable domain still gets)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/").lower() != request.host_url.rstrip("/").lower():
        raise CsrfFailed("the dashboard answers its own page only")
    if request.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
        raise CsrfFailed("the dashboard answers its own page only")


def _sessions(svc: Services) -> Sessions:
    if svc.sessions is None:  # pragma: no cover - app.py always sets them
        raise NotFound("this gateway has no dashboard")
    return svc.sessions


def _signed_in(svc: Services, *, write: bool) -> tuple[ApiKeyRecord, Session]:
    """The session's key, found again by its digest (a revoked key ends its sessions), with
    the CSRF token checked on writes. Reads are refused to other sites too: a page of a
    sibling site (the shop, on the same registrable domain) sends SameSite=Strict cookies."""
    _same_origin()
    sessions = _sessions(svc)
    session = sessions.read(request.cookies.get(_cookie_name()))
    key = svc.apikeys.by_digest(session.digest, SCOPE) if session else None
    if session is None or key is None:
        raise NotSignedIn("sign in to the dashboard with an audiences API key")
    if write and not sessions.csrf_ok(session, request.headers.get("X-CSRF-Token")):
        raise CsrfFailed("the request lacks this session's CSRF token (X-CSRF-Token)")
    return key, session


def _secure() -> bool:
    return bool(services().config.get("COOKIE_SECURE", True))


def _cookie_name() -> str:
    return cookie_name(_secure())


def _cookie(value: str, max_age: int) -> str:
    secure = _secure()
    return dump_cookie(
        cookie_name(secure),
        value,
        max_age=max_age,
        path="/" if secure else PATH,  # __Host- cookies are Path=/
        secure=secure,
        httponly=True,
        samesite="Strict",
    )


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post(f"{PATH}/session")
def sign_in() -> Response:
    _same_origin()
    if request.mimetype != "application/json":  # a form or text/plain could come cross-site
        raise UnsupportedMediaType("sign in with a JSON body (application/json)")
    svc = services()
    body = read_object(request, max_bytes=1024, max_depth=2)
    extra = sorted(set(body) - {"key"})
    presented = body.get("key")
    if extra or not isinstance(presented, str) or not presented.strip():
        raise ValidationFailed(
            'the body is {"key": "<an audiences API key>"}',
            fields={"key": "required: a string"} | {str(n)[:64]: "unknown" for n in extra[:10]},
        )
    key = svc.apikeys.identify(f"Bearer {presented.strip()}", SCOPE)
    sessions = _sessions(svc)
    earlier = sessions.read(request.cookies.get(_cookie_name()))
    if earlier is not None:  # one session per browser: the one it held ends
        sessions.end(earlier)
    value, session = sessions.issue(digest(presented.strip()))
    resp = jsonify({"key": {"name": key.name}, "csrf": sessions.csrf(session)})
    resp.headers.add("Set-Cookie", _cookie(value, sessions.max_age_s))
    return _no_store(resp)


@bp.get(f"{PATH}/session")
def current() -> Response:
    svc = services()
    key, session = _signed_in(svc, write=False)
    return _no_store(jsonify({"key": {"name": key.name}, "csrf": _sessions(svc).csrf(session)}))


@bp.delete(f"{PATH}/session")
def sign_out() -> Response:
    svc = services()
    _, session = _signed_in(svc, write=True)
    _sessions(svc).end(session)  # the cookie, even copied, names nothing from now on
    resp = Response(status=204)
    resp.headers.add("Set-Cookie", _cookie("", 0))
    return _no_store(resp)


# ---------------------------------------------------------------------- what the page asks
@bp.get(f"{PATH}/api/dimensions")
def dimensions() -> Response:
    svc = services()
    _signed_in(svc, write=False)
    audiences = _audiences(svc)
    rules = audiences.rules
    dims: dict[str, Any] = {
        name: {
            "values": list(d.trait.values) if d.trait else None,
            "labels": (d.trait.labels or None) if d.trait else None,
        }
        for name, d in rules.dimensions.items()
    }
    return _no_store(
        jsonify(
            {
                "dimensions": dims,
                "active_within_days": list(rules.windows),
                "k": audiences.settings.k,
            }
        )
    )


@bp.get(f"{PATH}/api/account")
def account() -> Response:
    svc = services()
    key, _ = _signed_in(svc, write=False)
    return _no_store(jsonify(_audiences(svc).account(key)))


@bp.post(f"{PATH}/api/estimate")
def estimate() -> Response:
    return _query("estimate")


@bp.post(f"{PATH}/api/breakdown")
def breakdown() -> Response:
    return _query("breakdown")


def _query(kind: str) -> Response:
    svc = services()
    key, _ = _signed_in(svc, write=True)
    body = read_object(request, max_bytes=16_384, max_depth=4)
    audiences = _audiences(svc)
    answer = audiences.estimate(key, body) if kind == "estimate" else audiences.breakdown(key, body)
    return _no_store(jsonify(answer))
