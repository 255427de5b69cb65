"""Build hook: the browser SDK's built files go into the wheel (pyproject.toml has the rest).

``sdk_js/dist/`` (committed) and ``sdk_js/demo/index.html`` are copied into the built package
as ``gateway/sdk/``, so that an installed gateway serves ``/sdk.js``, the content-hashed files
and ``/demo`` wherever it runs (gateway/assets.py looks there first). The repository keeps one
copy: an editable install serves ``sdk_js/`` itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SDK = HERE / "sdk_js"
FILES = {"dist": sorted((SDK / "dist").glob("*")), "demo": [SDK / "demo" / "index.html"]}


class BuildPyWithSdk(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # served from sdk_js/ in place
            return
        missing = [p for p in [SDK / "dist" / "sdk.js", *FILES["demo"]] if not p.is_file()]
        if missing:
            raise SystemExit(f"the browser SDK is missing ({missing[0]}): a wheel would serve none")
        target = Path(self.build_lib) / "gateway" / "sdk"
        shutil.rmtree(target, ignore_errors=True)  # no stale hashed files from an older build
        for folder, paths in FILES.items():
            (target / folder).mkdir(parents=True)
            for path in paths:
                if path.is_file():
                    self.copy_file(str(path), str(target / folder / path.name))


setup(cmdclass={"build_py": BuildPyWithSdk})
