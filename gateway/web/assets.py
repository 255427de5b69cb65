"""The browser SDK's built files and the demo page, served by the gateway itself.

``sdk_js/dist/`` is committed, so a fresh checkout serves it without a build step; a built
package carries a copy as ``gateway/sdk/`` (setup.py puts it there), so an installed wheel
serves the same files wherever it runs. The snippet loads ``/sdk.js`` by a fixed name, so
that name is cached briefly and new releases roll out within minutes; the content-hashed
copies (``/sdk.<hash>.js``, ``/sdk-banner.<hash>.js``) never change and are cached for a
year. In production a front such as nginx can serve the same files (``GATEWAY_SDK_DIR``
names another folder).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, current_app, send_from_directory

from ..core.errors import NotFound

bp = Blueprint("assets", __name__)

SHORT = 300  # seconds: the fixed names
LONG = 365 * 86_400  # the content-hashed names
_FIXED = frozenset({"sdk.js", "sdk.mjs", "sdk.d.ts", "sdk-banner.js", "snippet.min.js"})
_HASHED = re.compile(r"(sdk|sdk-banner)\.[0-9a-f]{8}\.js|marketers\.[0-9a-f]{8}\.(js|css)")


@cache
def default_dir() -> Path:
    """The package's copy of the SDK (an installed wheel), else ``sdk_js/`` of the checkout
    the package is imported from (an editable install, the tests)."""
    package = Path(__file__).resolve().parent.parent  # gateway/
    packaged = package / "sdk"
    if (packaged / "dist" / "sdk.js").is_file():
        return packaged
    return package.parent / "sdk_js"


def _root() -> Path:
    return Path(current_app.config.get("SDK_DIR") or default_dir())


def dist_dir() -> Path:
    """The built files' folder (``sdk_js/dist/`` or its packaged copy)."""
    return _root() / "dist"


@bp.get("/<name>")
def sdk_file(name: str) -> Response:
    if name in _FIXED:
        max_age, immutable = SHORT, False
    elif _HASHED.fullmatch(name):
        max_age, immutable = LONG, True
    else:
        raise NotFound(f"no such file: {name}")
    dist = dist_dir()
    if not (dist / name).is_file():
        raise NotFound(f"{name} is not built (run: cd sdk_js && npm ci && npm run build)")
    resp = send_from_directory(dist, name, max_age=max_age)
    if name.endswith(".d.ts"):
        resp.mimetype = "text/plain"
    if immutable:
        resp.headers["Cache-Control"] = f"public, max-age={LONG}, immutable"
    return resp


@bp.get("/demo")
def demo() -> Response:
    page = _root() / "demo" / "index.html"
    if not page.is_file():
        raise NotFound("the demo page is not in this installation")
    resp = send_from_directory(page.parent, page.name, max_age=0)
    resp.headers["Cache-Control"] = "no-cache"
    return resp
