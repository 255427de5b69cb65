"""Errors as answers: every refusal is a JSON body with a code, a message and the fields at
fault (``core/errors.py`` holds the classes).

One handler turns ``GatewayError`` (the store's outages included: the storage layer raises
``StorageUnavailable``), an empty rate-limit bucket and werkzeug's HTTP errors into
``{"error": {...}}`` answers, so no path can leak an HTML page or a 500 for input the gateway
merely did not like.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from ..core.errors import GatewayError, OverLimit, StorageUnavailable
from ..core.ratelimit import refusal

log = logging.getLogger(__name__)


def error_response(err: GatewayError) -> Response:
    resp = jsonify(err.body())
    resp.status_code = err.status
    if err.retry_after is not None:
        resp.headers["Retry-After"] = str(err.retry_after)
    elif err.status in (503, 409):
        resp.headers["Retry-After"] = "1"
    if err.status == 401 and err.code == "invalid_api_key":
        resp.headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
    return resp


def register(app: Flask) -> None:
    """Install the JSON error handlers on an application."""

    @app.errorhandler(StorageUnavailable)
    def _storage_down(err: StorageUnavailable) -> Response:
        log.warning("storage unavailable: %s (%s)", err.__cause__ or err, err.fields)
        metrics = app.extensions.get("metrics")
        if metrics is not None:
            kind = str(err.fields.get("store", "unconfirmed"))
            metrics.storage_errors.labels(kind=kind).inc()
        return error_response(StorageUnavailable(err.message))

    @app.errorhandler(GatewayError)
    def _gateway_error(err: GatewayError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        code = (err.name or "error").lower().replace(" ", "_")
        resp = error_response(
            GatewayError(err.description or err.name, code=code, status=err.code or 500)
        )
        if err.code == 405 and err.valid_methods:  # type: ignore[attr-defined]
            resp.headers["Allow"] = ", ".join(err.valid_methods)  # type: ignore[attr-defined]
        return resp

    @app.errorhandler(OverLimit)
    def _over_limit(err: OverLimit) -> Response:
        metrics = app.extensions.get("metrics")
        if metrics is not None:
            metrics.child(metrics.rate_limited, err.limit).inc()
        return error_response(refusal(err))
