"""WSGI entry point for production servers: ``gateway.wsgi:make_app`` (a factory)."""

from __future__ import annotations

import os

from flask import Flask

from . import create_app
from .core.config import from_env


def make_app() -> Flask:
    config = from_env()
    if os.environ.get("GATEWAY_INSTANCE_PATH"):
        config["INSTANCE_PATH"] = os.environ["GATEWAY_INSTANCE_PATH"]
    return create_app(config)
