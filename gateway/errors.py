"""Errors as data: every refusal is a JSON body with a code, a message and the fields at fault.

Views raise :class:`GatewayError` subclasses; one handler turns them, werkzeug's HTTP
errors and storage outages into ``{"error": {...}}`` answers, so no path can leak an HTML
page or a 500 for input the gateway merely did not like.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from .store import OverLimit

log = logging.getLogger(__name__)


class GatewayError(Exception):
    """A refusal with an HTTP status and a machine-readable code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        fields: dict[str, Any] | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.retry_after = retry_after  # seconds, for a Retry-After header
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            err["fields"] = self.fields
        return {"error": err}


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class ValidationFailed(BadRequest):
    code = "validation_failed"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


# The store answered but cannot take a write now: full (OOM), a replica (READONLY), loading
# its data, refusing writes after a failed save (MISCONF), a cluster without quorum. Like a
# store that does not answer: 503, nothing stored, try again later.
STORE_REFUSALS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    BusyLoadingError,
    MasterDownError,
    ClusterDownError,
    TryAgainError,
)
_REFUSAL_PREFIXES = ("MISCONF", "NOREPLICAS", "LOADING", "READONLY", "OOM", "CLUSTERDOWN")


def store_refused(err: BaseException) -> bool:
    """Whether a store error means the store cannot take requests now (503), not a bug."""
    if isinstance(err, STORE_REFUSALS):
        return True
    return isinstance(err, ResponseError) and str(err).startswith(_REFUSAL_PREFIXES)


class StorageUnavailable(GatewayError):
    status = 503
    code = "storage_unavailable"


class LedgerBusy(GatewayError):
    """Concurrent writers of one subject's ledger kept overtaking this one: the store is up
    (503 would say otherwise), the caller should simply try again."""

    status = 409
    code = "ledger_busy"


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
        from .ratelimit import refusal

        metrics = app.extensions.get("metrics")
        if metrics is not None:
            metrics.child(metrics.rate_limited, err.limit).inc()
        return error_response(refusal(err))

    @app.errorhandler(ResponseError)
    def _store_refused(err: ResponseError) -> Response:
        if not store_refused(err):
            raise err  # a real bug: Flask answers 500 and logs it
        return _storage_down(err)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _storage_down(err: Exception) -> Response:
        log.warning("storage unavailable: %s", err)
        metrics = app.extensions.get("metrics")
        if metrics is not None:
            metrics.storage_errors.labels(kind=type(err).__name__).inc()
        return error_response(
            StorageUnavailable("storage is unavailable; nothing was stored, retry later")
        )
