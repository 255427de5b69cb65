"""Server API keys on a request (``Authorization: Bearer``), for the servers' endpoints."""

from __future__ import annotations

from flask import request

from .services import Services, services


def authorised(scope: str) -> Services:
    """The app's services, once the request's API key is found to hold ``scope``."""
    svc = services()
    svc.apikeys.check(request.headers.get("Authorization"), scope)
    return svc
