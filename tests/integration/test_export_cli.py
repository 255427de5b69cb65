"""``python -m gateway export`` as an operator runs it: a Parquet file a recipient reads back
with pyarrow, the instance folder's export key (made once, the same pseudonyms next time), and
the refusals' exit codes (2: an unknown recipient or a bad argument; 3: the yearly ceiling),
none of which leaves a file."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from flask import Flask

from gateway.app import create_app
from gateway.core.export import Pseudonyms
from tests.conftest import make_config
from tests.helpers import app_subject, event

from .test_run import ROOT, gateway_env

RECIPIENTS = json.dumps({"analytics-sg": {"free_text": False}})


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(make_config(redis_url, tmp_path / "gw", RATE_LIMITS=False))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


def export(
    instance: Path, redis_url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "export", *args],
        cwd=ROOT,
        env=gateway_env(
            **{
                "GATEWAY_INSTANCE_PATH": str(instance),
                "REDIS_URL": redis_url,
                "GATEWAY_EXPORT_RECIPIENTS": RECIPIENTS,
                **env,
            }
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def people(app: Flask, n: int) -> list[str]:
    client = app.test_client()
    sids = []
    for i in range(n):
        sid, token = app_subject(client, personalization=True)
        body = {"events": [event("search", keyword="轴承", product=f"620{i}", category="BRG")]}
        resp = client.post("/v1/batch", json=body, headers={"X-Subject": token})
        assert resp.get_json()["stored"] == 1, resp.get_json()
        sids.append(sid)
    return sids


def test_export_writes_parquet_that_reads_back_and_refuses_with_its_exit_codes(
    app: Flask, redis_url: str, tmp_path: Path
) -> None:
    sids = people(app, 2)
    instance, files = tmp_path / "instance", tmp_path / "files"
    files.mkdir()
    args = ("--purpose", "personalization", "--recipient", "analytics-sg")

    first = export(instance, redis_url, *args, "--out", str(files / "first.parquet"))
    assert first.returncode == 0, first.stderr
    assert "2 rows of 2 people" in first.stdout, first.stdout
    # no GATEWAY_EXPORT_KEY: one was made in the instance folder, with a warning
    assert "GATEWAY_EXPORT_KEY not set" in first.stderr
    secret = (instance / "export_key").read_bytes().strip()
    table = pq.read_table(files / "first.parquet")
    rows = table.to_pylist()
    mine = Pseudonyms(secret, "analytics-sg")
    assert sorted(r["subject"] for r in rows) == sorted(mine(sid) for sid in sids)
    assert {r["product"] for r in rows} == {"6200", "6201"}
    assert {r["type"] for r in rows} == {"search"}
    assert all(r["ts"].endswith(":00:00Z") for r in rows)
    assert "keyword" not in table.column_names  # free text: not for this recipient
    digest = hashlib.sha256((files / "first.parquet").read_bytes()).hexdigest()
    assert digest in first.stdout

    # the next run: the same key, the same pseudonyms, nobody new this year
    again = export(instance, redis_url, *args, "--out", str(files / "again.parquet"))
    assert again.returncode == 0, again.stderr
    assert "GATEWAY_EXPORT_KEY" not in again.stderr
    assert "(0 new to analytics-sg, 2 in" in again.stdout, again.stdout
    assert pq.read_table(files / "again.parquet").to_pylist() == rows
    later = export(
        instance, redis_url, *args, "--out", str(files / "later.parquet"), "--since", "2999-01-01"
    )
    assert later.returncode == 0 and pq.read_table(files / "later.parquet").num_rows == 0

    refusals: list[tuple[tuple[str, ...], dict[str, Any], int, str]] = [
        (("--recipient", "elsewhere"), {}, 2, "unknown recipient 'elsewhere'"),
        (("--purpose", "necessary"), {}, 2, "unknown purpose 'necessary'"),
        (("--since", "last week"), {}, 2, "--since"),
        ((), {"EXPORT_MAX_SUBJECTS_PER_YEAR": "2"}, 3, "EXPORT_MAX_SUBJECTS_PER_YEAR=2"),
        ((), {"GATEWAY_EXPORT_RECIPIENTS": "{"}, 2, "EXPORT_RECIPIENTS is not JSON"),
    ]
    for changed, env, code, said in refusals:
        chosen = dict(zip(args[::2], args[1::2], strict=True))
        chosen |= dict(zip(changed[::2], changed[1::2], strict=True))
        argv = [text for pair in chosen.items() for text in pair]
        refused = export(instance, redis_url, *argv, "--out", str(files / "no.parquet"), **env)
        assert (refused.returncode, refused.stdout) == (code, ""), refused.stderr
        assert said in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert not (files / "no.parquet").exists()
    assert sorted(p.name for p in files.iterdir()) == [
        "again.parquet",
        "first.parquet",
        "later.parquet",
    ]  # no temporary file left by a refusal
    taken = export(instance, redis_url, *args, "--out", str(files / "first.parquet"))
    assert taken.returncode == 2 and "must not" in taken.stderr
    assert hashlib.sha256((files / "first.parquet").read_bytes()).hexdigest() == digest

    # the audit log: the three exports, and the refusals that reached it
    svc = app.extensions["gateway"]
    key = svc.apikeys.create("privacy office", ["exports_admin"])
    log = app.test_client().get("/v1/exports", headers={"Authorization": f"Bearer {key}"})
    entries = log.get_json()["exports"]
    assert [(e["outcome"], e.get("reason")) for e in entries] == [
        ("exported", None),
        ("exported", None),
        ("exported", None),
        ("refused", "unknown_recipient"),
        ("refused", "unknown_purpose"),
        ("refused", "ceiling"),
    ]
    assert entries[0]["sha256"] == digest and entries[0]["file"] == "first.parquet"


def test_export_help_names_its_options(tmp_path: Path, redis_url: str) -> None:
    shown = export(tmp_path, redis_url, "--help")
    assert shown.returncode == 0
    for option in ("--purpose", "--recipient", "--out", "--since"):
        assert option in shown.stdout
    assert "EXPORT_MAX_SUBJECTS_PER_YEAR" in shown.stdout and "``" not in shown.stdout
    missing = export(tmp_path, redis_url, "--purpose", "personalization")
    assert missing.returncode == 2 and "--recipient" in missing.stderr
