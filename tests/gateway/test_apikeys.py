"""Server API keys: kept as digests only, one answer for every wrong key, and the CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gateway.core.apikeys import ApiKeys
from gateway.core.errors import InvalidApiKey

from ..helpers import K

pytestmark = pytest.mark.stores  # run on the embedded Valkey, Redis 7.0 and a cluster

ROOT = Path(__file__).resolve().parents[2]
CONTACT = "/v1/senders/contact?subject=" + "0" * 32 + "&channel=email"


def test_a_key_is_kept_as_its_digest_only(app: Flask, r: redis.Redis) -> None:
    keys: ApiKeys = app.extensions["gateway"].apikeys
    key = keys.create("newsletter", ["senders"])
    assert key.startswith("gwk_") and len(key) > 40
    dump = repr([r.hgetall(k) for k in r.scan_iter("apikey:*")]) + repr(r.smembers(K.APIKEYS))
    assert key not in dump and key[4:] not in dump
    assert r.exists(K.apikey(hashlib.sha256(key.encode()).hexdigest()))
    [row] = keys.list()
    assert row["name"] == "newsletter" and row["scopes"] == "senders"
    assert keys.check(f"Bearer {key}", "senders") == "newsletter"
    with pytest.raises(InvalidApiKey):
        keys.check(f"Bearer {key}", "saved_login")  # a scope it was not given
    assert keys.revoke(row["digest"]) == 1
    with pytest.raises(InvalidApiKey):
        keys.check(f"Bearer {key}", "senders")


def test_every_wrong_key_costs_one_lookup_by_its_whole_digest(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No part of a key is compared on its own: a key with the right prefix, one wrong in its
    last character and garbage all cost the same single lookup, and get the same answer."""
    keys: ApiKeys = app.extensions["gateway"].apikeys
    good = keys.create("crm", ["senders"])
    looked_up: list[str] = []
    store = keys.store.r  # type: ignore[attr-defined]  # the Redis store's client
    real = store.hgetall

    def recording(name: str) -> dict[str, str]:
        looked_up.append(name)
        return real(name)

    monkeypatch.setattr(store, "hgetall", recording)
    wrong = [good[:-1] + ("x" if good[-1] != "x" else "y"), "gwk_" + "A" * 43, "nonsense"]
    answers = []
    for key in wrong:
        looked_up.clear()
        resp = client.get(CONTACT, headers={"Authorization": f"Bearer {key}"})
        answers.append((resp.status_code, resp.get_json(), resp.headers["WWW-Authenticate"]))
        assert looked_up == [K.apikey(hashlib.sha256(key.encode()).hexdigest())]
    assert all(a == answers[0] for a in answers)
    assert answers[0][0] == 401 and answers[0][1]["error"]["code"] == "invalid_api_key"
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        assert client.get(CONTACT, headers=headers).status_code == 401


def test_the_cli_creates_lists_and_revokes_keys(app: Flask, redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_INSTANCE_PATH": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "apikey", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = cli("create", "mailer", "--scope", "senders")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert app.extensions["gateway"].apikeys.check(f"Bearer {key}", "senders") == "mailer"
    listed = cli("list")
    assert "mailer" in listed.stdout and key not in listed.stdout
    digest = listed.stdout.split()[0]
    assert cli("revoke", digest).returncode == 0
    assert cli("revoke", digest).returncode == 1  # nothing left to revoke
    assert cli("create", "x", "--scope", "everything").returncode == 2
    assert cli("frobnicate").returncode == 2
