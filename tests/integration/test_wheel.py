"""The production recipe: a wheel built from the repository, installed into a fresh virtualenv,
serves the browser SDK and the demo from any folder, with the ``gateway`` command.

One test, since building and installing take a while: pip's cache is reused, and the packages
come from the registries pip is configured with, as ``pip install .`` would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from .test_readme import fresh_copy
from .test_run import ROOT, free_port, gateway_env, start, stop, valkey_running


def pip(python: Path | str, *args: str, cwd: Path) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_a_wheel_installed_anywhere_serves_the_sdk_and_the_demo(tmp_path: Path) -> None:
    # a copy of the sources: an in-tree build would leave build/ and *.egg-info behind
    source = fresh_copy(tmp_path / "source")
    wheels = tmp_path / "wheels"
    pip(sys.executable, "wheel", "--no-deps", "-w", str(wheels), str(source), cwd=tmp_path)
    (wheel,) = wheels.glob("consent_gateway-*.whl")
    dist = ROOT / "sdk_js" / "dist"
    manifest = json.loads((dist / "manifest.json").read_text())
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for name in [*manifest.values(), "sdk.js", "sdk-banner.js", "snippet.min.js"]:
        assert f"gateway/sdk/dist/{name}" in names, name
    assert "gateway/sdk/demo/index.html" in names
    assert "gateway/web/templates/home.html" in names and "gateway/core/catalogue.toml" in names
    assert "gateway/storage/lua/events.lua" in names and "gateway/web/pages.toml" in names
    assert not [n for n in names if n.startswith(("sdk_js/", "tests/"))]
    assert any(n.endswith("entry_points.txt") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip(venv / "bin" / "python", "install", str(wheel), cwd=tmp_path)
    elsewhere = tmp_path / "srv"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import gateway; print(gateway.__file__)"],
        cwd=elsewhere,
        env=gateway_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where  # the installed package, not the checkout

    port = free_port()
    instance = elsewhere / "instance"
    proc = start(instance, port, command=[str(venv / "bin" / "gateway")], cwd=elsewhere, dev=False)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base) as c:
            sdk = c.get("/sdk.js")
            assert sdk.status_code == 200, sdk.text
            assert sdk.content == (dist / "sdk.js").read_bytes()
            for hashed in manifest.values():
                resp = c.get(f"/{hashed}")
                assert resp.status_code == 200 and "immutable" in resp.headers["Cache-Control"]
                assert resp.content == (dist / hashed).read_bytes()
            demo = c.get("/demo")
            assert demo.status_code == 200 and "<html" in demo.text
            dashboard = c.get("/marketers")  # its template and built files are in the wheel
            assert dashboard.status_code == 200, dashboard.text
            assert f'src="/{manifest["marketers.js"]}"' in dashboard.text
            assert c.get("/openapi.json").json()["openapi"] == "3.1.0"
            assert c.get("/").status_code == 404  # production: no landing page
            assert c.get("/healthz").json()["status"] == "ok"
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert not valkey_running(instance)
