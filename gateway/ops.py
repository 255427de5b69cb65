"""``GET /healthz``: is this instance able to store? Load balancers take it out when not."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from . import compaction
from .services import services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    svc = services()
    try:
        svc.store.ping()
        storage = "ok"
    except RedisError as e:
        storage = f"unavailable: {type(e).__name__}"
    durability = {None: "unknown", True: "waitaof", False: "aof-unconfirmed"}[
        svc.store.waitaof_supported
    ]
    resp = jsonify(
        {
            "status": "ok" if storage == "ok" else "degraded",
            "storage": storage,
            "consent_durability": durability,
            # "ok", or why erased values may stay in the store's files (docs/privacy.md)
            "erasure_files": compaction.files_status() if storage == "ok" else "unknown",
            "policy_version": svc.catalogue.current.version,
        }
    )
    resp.status_code = 200 if storage == "ok" else 503
    return resp
