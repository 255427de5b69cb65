"""The SDK's built files and the demo page, served with the right caching."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway import create_app

from ..conftest import make_config


@pytest.fixture
def sdk_client(redis_url: str, tmp_path: Path) -> FlaskClient:
    sdk = tmp_path / "sdk_js"
    (sdk / "dist").mkdir(parents=True)
    (sdk / "demo").mkdir()
    (sdk / "dist" / "sdk.js").write_text("/*sdk*/")
    (sdk / "dist" / "sdk.0123abcd.js").write_text("/*sdk v*/")
    (sdk / "dist" / "sdk-banner.89abcdef.js").write_text("/*banner v*/")
    (sdk / "demo" / "index.html").write_text("<!doctype html><title>demo</title>")
    (tmp_path / "secret.js").write_text("no")
    return create_app(make_config(redis_url, tmp_path, SDK_DIR=str(sdk))).test_client()


def test_fixed_name_is_cached_briefly(sdk_client: FlaskClient) -> None:
    resp = sdk_client.get("/sdk.js")
    assert resp.status_code == 200 and resp.data == b"/*sdk*/"
    assert resp.mimetype in {"text/javascript", "application/javascript"}
    assert resp.headers["Cache-Control"] == "public, max-age=300"


def test_hashed_names_are_immutable(sdk_client: FlaskClient) -> None:
    for name in ("sdk.0123abcd.js", "sdk-banner.89abcdef.js"):
        resp = sdk_client.get("/" + name)
        assert resp.status_code == 200
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    "path", ["/sdk-banner.js", "/other.js", "/sdk.0123abcX.js", "/..%2fsecret.js", "/secret.js"]
)
def test_anything_else_is_a_json_404(sdk_client: FlaskClient, path: str) -> None:
    resp = sdk_client.get(path)
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"


def test_demo_page(sdk_client: FlaskClient) -> None:
    resp = sdk_client.get("/demo")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert b"<title>demo</title>" in resp.data
