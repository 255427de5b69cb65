"""The web layer's view of an application: the core's ``Gateway`` and the web's own parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from ..core.service import Gateway
from ..core.sessions import Sessions
from .identity import CookiePolicy
from .origins import OriginPolicy


@dataclass
class Services(Gateway):
    origins: OriginPolicy = field(default_factory=lambda: OriginPolicy(()))
    cookies: CookiePolicy = field(default_factory=lambda: CookiePolicy(True, 0))
    policy_json: bytes = b"{}"
    sessions: Sessions | None = None  # the dashboard's (app.py always sets them)
    closers: list[Any] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)  # started with the first request (.start())


def services() -> Services:
    found: Services = current_app.extensions["gateway"]
    return found
