"""Every error the gateway raises, in one module (as itsdangerous keeps its ``exc.py``).

Refusals are data: a :class:`GatewayError` carries the HTTP status the web layer answers
with, a machine-readable code, a message and the fields at fault, and ``body()`` is the
uniform JSON refusal (``{"error": {"code", "message", "fields"}}``). The storage layer
raises the outcomes a caller must act on (``LedgerConflict``, ``StaleConsent``,
``OverLimit``, ``NotDurable``) and turns every failure of the store itself into
``StorageUnavailable``: no redis exception ever leaves it. Errors of configuration are plain
``ValueError`` subclasses, raised at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


# ---------------------------------------------------------------------- refusals (HTTP)
class GatewayError(Exception):
    """A refusal with an HTTP status and a machine-readable code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        fields: Mapping[str, Any] | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = dict(fields or {})
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


class NumberTooLarge(InvalidJSON):
    """An integer past Python's int-string limit (4,300 digits): no field takes one."""

    code = "number_too_large"


class InvalidString(InvalidJSON):
    """A string holding a lone surrogate (an unpaired ``\\ud800``-``\\udfff`` escape), which
    no UTF-8 store can hold."""

    code = "invalid_string"


class InvalidEncoding(BadRequest):
    code = "invalid_encoding"


class TooDeep(BadRequest):
    code = "too_deep"


class NoValidEvent(BadRequest):
    """An APP batch none of whose events is valid (each one's error in ``fields``)."""

    code = "no_valid_event"


class ValidationFailed(BadRequest):
    code = "validation_failed"


class TooManyParameters(BadRequest):
    code = "too_many_parameters"


class InvalidCursor(BadRequest):
    code = "invalid_cursor"


class SeparateConsentRequired(BadRequest):
    code = "separate_consent_required"


class InvalidSubject(GatewayError):
    status = 401
    code = "invalid_subject"


class SubjectRequired(InvalidSubject):
    code = "subject_required"


class InvalidApiKey(GatewayError):
    status = 401
    code = "invalid_api_key"


class NotSignedIn(GatewayError):
    """The marketers' dashboard without a valid session: none, expired, or its key revoked."""

    status = 401
    code = "not_signed_in"


class InvalidSavedLogin(GatewayError):
    status = 401
    code = "invalid_saved_login"


class SavedLoginReused(GatewayError):
    status = 401
    code = "saved_login_reused"


class InvalidWebhookSecret(GatewayError):
    status = 401
    code = "invalid_webhook_secret"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class CrossSiteRefused(Forbidden):
    code = "cross_site_refused"


class CsrfFailed(Forbidden):
    """A dashboard write without its session's CSRF token, or from another origin."""

    code = "csrf_failed"


class NavigationRefused(Forbidden):
    code = "navigation_refused"


class SavedLoginNotGranted(Forbidden):
    code = "saved_login_not_granted"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class LedgerBusy(GatewayError):
    """Concurrent writers of one subject's ledger kept overtaking this one: the store is up
    (503 would say otherwise), the caller should simply try again."""

    status = 409
    code = "ledger_busy"


class NotLinked(GatewayError):
    """Traits for an account no subject is linked to: kept for nobody, so not kept at all."""

    status = 409
    code = "no_linked_subject"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class TooManyEvents(PayloadTooLarge):
    code = "too_many_events"


class InflatedTooLarge(PayloadTooLarge):
    """A gzip body that inflates past the limit (refused before it is inflated in full)."""

    code = "inflated_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class UnsupportedEncoding(UnsupportedMediaType):
    """A ``Content-Encoding`` other than gzip or none."""

    code = "unsupported_encoding"


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"


class BudgetExhausted(RateLimited):
    """An API key's privacy budget for the month is spent (audiences)."""

    code = "budget_exhausted"


class TooCloseToEarlierQuery(BadRequest):
    """A query whose people differ from one of the key's recent queries' by fewer than the
    floor: the difference would single people out (audiences)."""

    code = "too_close_to_earlier_query"


class KeyBusy(GatewayError):
    """Another query of the same API key is being answered (audiences): retry."""

    status = 409
    code = "key_busy"


class StorageUnavailable(GatewayError):
    """The store does not answer, or answers that it cannot take requests now (full,
    read-only, loading, a cluster without quorum): nothing was stored, try again later."""

    status = 503
    code = "storage_unavailable"


# ---------------------------------------------------------------------- store outcomes
class LedgerConflict(Exception):
    """Another consent write for the same subject landed first; re-read and try again."""

    def __init__(self, head: str) -> None:
        super().__init__(head)
        self.head = head


class StaleConsent(Exception):
    """The consent changed since the caller's view of it; ``state`` is the consent now."""

    def __init__(self, state: Any) -> None:
        super().__init__("the consent changed since the caller read it")
        self.state = state


class OverLimit(Exception):
    """A rate limit's bucket lacks the tokens a write needs; nothing was written.

    ``limit`` names the bucket (``new_subjects``, ``ledger_writes``,
    ``address_ledger_writes``, ``events``) and ``wait_ms`` says when the tokens will be
    there."""

    def __init__(self, limit: str, wait_ms: int) -> None:
        super().__init__(f"{limit}: retry in {wait_ms} ms")
        self.limit = limit
        self.wait_ms = int(wait_ms)


class NotDurable(Exception):
    """The server did not confirm the fsync of a consent write in time."""


# ---------------------------------------------------------------------- start-up
class InstanceTaken(Exception):
    """The instance folder is taken by a running gateway, or that gateway's store cannot be
    reached from here (``cli/lock.py``): the message names the gateway (pid, port)."""


class CatalogueError(ValueError):
    """The catalogue file contradicts itself; raised at load time."""


class ConfigError(ValueError):
    """A setting cannot be understood."""


class ReceiptKeyError(ValueError):
    """A configured receipt key cannot be used."""
