"""The collection gateway: ``create_app(config)`` builds one instance.

Three layers, dependencies pointing one way (docs/architecture.md): ``web`` (Flask and WSGI:
routes, request parsing, cookies, pages) uses ``core`` (no Flask, no redis: the catalogue,
events, consent rules, the ledger, tokens, enrichment), whose interfaces to a store
(``core/ports.py``) ``storage`` implements (the only code that imports redis). ``app.py``
wires them together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app"]

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: Any = None) -> Flask:
    """Build a gateway (``app.create_app``); imported lazily, so that ``gateway.core`` and
    ``gateway.storage`` can be used without loading the web layer."""
    from .app import create_app as build

    return build(config)
