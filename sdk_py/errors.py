"""What the SDK raises: only from the calls that must answer (consent, subject, and the
server clients of ``backend.py``).

``track`` never raises; the consent calls do, because the APP has to tell its user that a
choice was not recorded.
"""

from __future__ import annotations

from typing import Any


class SdkError(Exception):
    """Base class of the SDK's errors."""


class GatewayRefused(SdkError):
    """The gateway answered with an error; ``status``, ``code`` and ``fields`` say which."""

    def __init__(
        self, status: int, code: str, message: str, fields: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


class GatewayUnavailable(SdkError):
    """No answer, or a 5xx/429/408: the call may be tried again later."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BudgetExhausted(GatewayRefused):
    """The API key's privacy budget for the month is spent (audience counts, HTTP 429): no new
    question is answered until it renews on the 1st (UTC), ``retry_after`` seconds from now
    (None when the gateway did not say). Asking a question already answered today still
    works, at no cost. Not worth retrying before then."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(status, code, message, fields)
        self.retry_after = retry_after


class TooCloseToEarlierQuery(GatewayRefused):
    """The people a query matches differ from one of the key's recent queries' by fewer than
    the floor: answering both would single them out (audience counts, HTTP 400). Asking it
    again will not help; ``fields["earlier_filters"]`` names the earlier query."""
