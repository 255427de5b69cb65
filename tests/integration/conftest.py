"""Browser tests: Debian's Chromium driven by Playwright against a real gateway on Valkey."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Playwright, sync_playwright

from gateway import create_app
from tests.conftest import make_config

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps reaching for Google's hosts, which
# this closed network refuses; --no-sandbox because CI runs as root.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():  # the test command installs it: never skip silently
        raise RuntimeError(f"{CHROMIUM} is missing: run ./scripts/test (apt-get install chromium)")
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield b
    b.close()


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The gateway the browser tests serve: its own origin is the only one that may write."""
    application = create_app(make_config(redis_url, tmp_path, ALLOWED_ORIGINS=[]))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


@pytest.fixture
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def new_context(browser: Browser, **over: Any) -> Any:
    opts: dict[str, Any] = {"locale": "zh-CN", "viewport": {"width": 1280, "height": 800}}
    opts.update(over)
    return browser.new_context(**opts)
