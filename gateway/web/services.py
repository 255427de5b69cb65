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
    _started: bool = field(default=False, repr=False)

    def start_jobs(self) -> None:
        """The process's background work (the store's housekeeping, retention, the audience
        indexer), started by the first request it serves, whichever path answers it: a worker
        that only ever answers the pixel (which runs in front of Flask) still trims what its
        purposes no longer keep (clause 4). A process that never serves starts nothing. Once
        started, an attribute read a request."""
        if self._started:
            return
        self.store.start_housekeeping()
        for job in self.jobs:
            job.start()
        self._started = True


def services() -> Services:
    found: Services = current_app.extensions["gateway"]
    return found
