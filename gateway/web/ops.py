"""``GET /healthz``: is this instance able to store? Load balancers take it out when not."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .services import services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    svc = services()
    health = svc.store.health()
    storage = "ok" if health.reachable else health.problem
    resp = jsonify(
        {
            "status": "ok" if health.reachable else "degraded",
            "storage": storage,
            "consent_durability": health.durability,
            # "ok", or why erased values may stay in the store's files (docs/privacy.md)
            "erasure_files": svc.store.erasure_files() if health.reachable else "unknown",
            "policy_version": svc.catalogue.current.version,
        }
    )
    resp.status_code = 200 if health.reachable else 503
    return resp
