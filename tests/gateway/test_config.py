"""Configuration from the environment, and the instance key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import create_app
from gateway.core.config import ConfigError, from_env

from ..conftest import make_config
from ..helpers import grant


def test_from_env_converts_types() -> None:
    cfg = from_env(
        {
            "REDIS_URL": "redis://x:6379/0",
            "GATEWAY_SECRET_KEYS": "new, old ,",
            "ALLOWED_ORIGINS": "https://a.example,https://b.example",
            "TRUSTED_PROXIES": "1",
            "GATEWAY_COOKIE_SECURE": "false",
            "GEOIP_DB": "/srv/geo.mmdb",
            "UNRELATED": "x",
        }
    )
    assert cfg == {
        "REDIS_URL": "redis://x:6379/0",
        "SECRET_KEYS": ["new", "old"],
        "ALLOWED_ORIGINS": ["https://a.example", "https://b.example"],
        "TRUSTED_PROXIES": 1,
        "COOKIE_SECURE": False,
        "GEOIP_DB": "/srv/geo.mmdb",
    }


def test_every_setting_from_the_environment_takes_its_defaults_type() -> None:
    from gateway.core.config import _ENV_NAMES, DEFAULTS

    env_name = {key: name for name, key in _ENV_NAMES.items()}
    for key, default in DEFAULTS.items():
        if default is None or isinstance(default, list):
            continue
        raw = {bool: "true", int: "7", float: "1.5", str: "44"}[type(default)]
        cfg = from_env({env_name.get(key, key): raw})
        assert type(cfg[key]) is type(default), key


def test_docs_name_every_setting() -> None:
    from gateway.core.config import _ENV_NAMES, DEFAULTS

    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    env_name = {key: name for name, key in _ENV_NAMES.items()}
    missing = [k for k in DEFAULTS if f"`{env_name.get(k, k)}`" not in docs]
    assert not missing, missing


@pytest.mark.parametrize(
    "env",
    [{"TRUSTED_PROXIES": "one"}, {"TRUSTED_PROXIES": "-1"}, {"GATEWAY_COOKIE_SECURE": "maybe"}],
)
def test_bad_values_are_named(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))):
        from_env(env)


def test_redis_url_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="REDIS_URL"):
        create_app({"SECRET_KEYS": ["k"]})


def test_generated_key_survives_restart(redis_url: str, tmp_path: Path) -> None:
    cfg = make_config(redis_url, tmp_path, SECRET_KEYS=[])
    first = create_app(cfg).test_client()
    grant(first, personalization=True)
    key_file = tmp_path / "instance" / "secret_key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    cookie = first.get_cookie("_vid").value  # type: ignore[union-attr]
    second = create_app(cfg).test_client()  # a restart: same instance folder, same key
    second.set_cookie("_vid", cookie)
    assert second.get("/v1/consent").get_json()["purposes"]["personalization"]["granted"] is True
