"""``GET /openapi.json``: an OpenAPI 3.1 document of every endpoint, made from the running
application itself, and under ``--dev`` a page that renders it (``GET /docs/api``).

The paths are the application's own URL map (and the pixel, served in front of Flask); each
route's description is looked up in ``operations.py``, and a route without one stops the
document's build: the tests build it, so a new endpoint cannot ship undescribed. The bodies'
schemas come from the validators the gateway itself uses (``schemas.py``). The document is
built once per application and served as bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template

from ...core.errors import NotFound
from ..services import Services, services
from .operations import DEV_ONLY, ERRORS, OPERATIONS, pixel
from .schemas import components, error_components

bp = Blueprint("openapi", __name__)

SKIPPED_METHODS = {"HEAD", "OPTIONS"}  # answered by Flask itself for every route
_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

SECURITY_SCHEMES = {
    "subjectCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "_vid",
        "description": "a browser's signed subject id, set by the consent endpoints",
    },
    "subjectHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Subject",
        "description": "an APP installation's signed subject token (POST /v1/subjects)",
    },
    "serverKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "a server API key (gateway apikey create NAME --scope SCOPE)",
    },
    "dashboardSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "__Host-gw_marketer",
        "description": "the marketers' dashboard's session (POST /marketers/session); writes "
        "also send X-CSRF-Token. Over plain HTTP (--dev) the cookie is gw_marketer",
    },
    "webhookSecret": {"type": "apiKey", "in": "header", "name": "X-Webhook-Secret"},
}


class Undocumented(LookupError):
    """A route with no description in ``operations.py``, or a description of no route (but
    the development-only ones, in production)."""

    def __init__(self, routes: list[str]) -> None:
        super().__init__(f"routes without an OpenAPI description: {', '.join(routes)}")
        self.routes = routes


def openapi_path(rule: str) -> str:
    """Flask's ``/v1/accounts/<path:account>/traits`` as ``/v1/accounts/{account}/traits``."""
    return _PARAM.sub(r"{\1}", rule)


def document(app: Flask, svc: Services) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    described = set()
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - SKIPPED_METHODS):
            found = OPERATIONS.get(rule.endpoint, {}).get(method.lower())
            if found is None:
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
                continue
            described.add((rule.endpoint, method.lower()))
            operation = dict(found, operationId=rule.endpoint.replace(".", "_") + f"_{method}")
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = operation
    stale = [
        f"{method.upper()} ({endpoint}: no such route)"
        for endpoint, ops in OPERATIONS.items()
        for method in ops
        if (endpoint, method) not in described
        and not (endpoint in DEV_ONLY and not app.config.get("DEV"))
    ]
    if missing or stale:
        raise Undocumented(missing + stale)
    cat = svc.catalogue
    for path, ops in pixel(cat).items():
        paths[path] = {m: dict(o, operationId="pixel_" + m) for m, o in ops.items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Consent gateway",
            "version": cat.current.version,
            "summary": "Consent-aware collection, subject rights and audience statistics",
            "description": "The wire contract is docs/protocol.md; errors are always "
            '{"error": {"code", "message", "fields"}}. info.version is the policy version.',
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components(cat, svc.codec, svc.consent_schema)
            | error_components(set(ERRORS)),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _built() -> bytes:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get("openapi")
    if cached is None:
        cached = json.dumps(document(app, services()), ensure_ascii=False).encode()
        app.extensions["openapi"] = cached
    found: bytes = cached
    return found


@bp.get("/openapi.json")
def openapi_document() -> Response:
    resp = Response(_built(), mimetype="application/json")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/docs/api")
def reference() -> Response:
    if not current_app.config.get("DEV"):
        raise NotFound("the API reference page is served in development mode (--dev)")
    doc = json.loads(_built())
    body = render_template("openapi.html", doc=doc, dumps=_pretty)
    resp = Response(body, 200, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)
