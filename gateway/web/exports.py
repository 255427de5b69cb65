"""The audit log of exports abroad (clause 3(2) item 4; PIPL art. 38-39): API key scope
``exports_admin``.

* ``GET /v1/exports?since=<ms or ISO 8601>&limit=`` -> ``{"exports": [...]}``, oldest first:
  every export ``gateway export`` wrote (recipient, purpose, time range, rows, people, the
  file's SHA-256, when) and every one it refused.

Exports are made by an operator on the command line, never over HTTP: a file of people's
data leaving the country is not something a leaked API key should be able to ask for. This
endpoint only shows what was sent, so that a privacy office can check it against the files
received (``core/export.py``).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..core.export import export_log
from .paging import limit_of, since_of
from .services import services

bp = Blueprint("exports", __name__)


@bp.get("/v1/exports")
def exports() -> Response:
    svc = services()
    svc.apikeys.identify(request.headers.get("Authorization"), "exports_admin")
    since = since_of(request.args.get("since", "0"))
    return jsonify({"exports": export_log(svc.store.exports, since, limit_of(request.args))})
