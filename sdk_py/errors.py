"""What the SDK raises to the APP: only from the calls that must answer (consent, subject).

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
