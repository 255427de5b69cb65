"""Configuration: defaults, and the environment variables that override them.

Every setting is documented in docs/configuration.md; ``from_env`` is the only place that
reads the environment, so ``create_app(config)`` stays a pure function of its argument.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "REDIS_URL": None,  # None: python -m gateway starts its embedded server
    "SECRET_KEYS": [],  # newest first; empty: a key is generated once in the instance folder
    "GEOIP_DB": None,  # None: the GeoLite2-City database of the maxminddb-geolite2 package
    "ALLOWED_ORIGINS": [],  # sites that may embed the SDK; the gateway's own origin always may
    "TRUSTED_PROXIES": 0,  # proxy hops whose X-Forwarded-* headers are believed
    "COOKIE_SECURE": True,  # False only for local development over plain HTTP
    "COOKIE_DOMAIN": None,
    "VID_MAX_AGE_DAYS": 395,
    "DEDUP_WINDOW_S": 86_400,
    "REDIS_CLUSTER": "auto",  # auto: ask the server; yes / no: say so
    "SLOT_GROUPS": 64,  # subjects' hash-slot groups (keys.py): streams and lists per purpose
    "EVENT_GROUP_MAX": 32,  # event writes waiting together in a process share a call (1: none)
    "REDIS_CONNECT_TIMEOUT_S": 1.0,
    "REDIS_SOCKET_TIMEOUT_S": 2.0,
    "AOF_TIMEOUT_MS": 1_000,
    "ERASURE_COMPACT_S": 60,  # erased values leave the store's files within this (AOF rewrite)
    "RETENTION_EVERY_S": 3600.0,  # retention runs by itself this often (0: only by command)
    "MAX_EVENTS_PER_REQUEST": 100,
    "MAX_EVENT_BODY_BYTES": 64 * 1024,
    "MAX_EVENTS_PER_BATCH": 500,  # POST /v1/batch
    "MAX_BATCH_BYTES": 1024 * 1024,  # POST /v1/batch, as sent and after gzip inflation
    "MAX_JSON_DEPTH": 20,
    "EVENT_MAX_AGE_S": 7 * 86_400,  # older client timestamps are refused
    "EVENT_MAX_SKEW_S": 3_600,  # so are timestamps further in the future
    "UA_CACHE_SIZE": 10_000,
    "SDK_DIR": None,  # None: the SDK packaged in gateway/sdk/, else sdk_js/ of the checkout
    "PUBLIC_URL": None,  # the gateway's address in links it makes; None: the request's host
    "SMS_CODE_TTL_S": 30 * 86_400,  # how long an SMS unsubscribe code (and reply number) holds
    "SMS_WEBHOOK_SECRET": None,  # shared with the SMS provider; None: no inbound webhook
    "SMS_COUNTRY_CODE": "86",  # numbers without an international prefix are of this country
    "DEV": False,  # local development (python -m gateway --dev): the landing page, the demo login
    "POLICY_URL": None,  # where the site's privacy policy is published; the banner links to it
    "SAVED_LOGIN_MAX_S": 30 * 86_400,  # the longest a saved login may last, whatever is asked
    "RECEIPT_KEYS": [],  # Ed25519 PEM keys (paths or PEM text), newest first; empty: a dev key
    "LEDGER_PROOF_DAYS": 1_095,  # ledgers outlive the data collected under them by this much
    "AUDIENCE_INDEXER": True,  # this gateway may keep the audience index (one at a time does)
    "AUDIENCE_INDEX_EVERY_S": 1.0,  # how often the indexer reads the feed and saves
    "AUDIENCE_K": 100,  # no count below this many people is released (50 at least)
    "AUDIENCE_EPSILON": 0.5,  # privacy cost of one estimate
    "AUDIENCE_BREAKDOWN_EPSILON": 1.0,  # of one breakdown, split over its released cells
    "AUDIENCE_MONTHLY_BUDGET": 10.0,  # per API key and calendar month (UTC)
    "AUDIENCE_RECENT": 20,  # earlier queries of a key the difference check compares with
    "RATE_LIMITS": True,  # GATEWAY_RATE_LIMITS=off: none of the limits below
    "RATE_NEW_SUBJECTS_BURST": 60,  # per client address (IPv6: per /64)
    "RATE_NEW_SUBJECTS_PER_HOUR": 600,
    "RATE_LEDGER_BURST": 30,  # consent API writes, per subject
    "RATE_LEDGER_PER_HOUR": 60,
    "RATE_EVENTS_BURST": 10_000,  # events stored, per subject
    "RATE_EVENTS_PER_HOUR": 360_000,
    "RATE_ADDRESS_LEDGER_BURST": 300,  # consent API writes, per client address (IPv6: /64)
    "RATE_ADDRESS_LEDGER_PER_HOUR": 3_600,
    "EXPORT_KEY": None,  # the export pseudonyms' secret; None: made once in the instance folder
    "EXPORT_RECIPIENTS": None,  # who exports go to, JSON: {"<name>": {"free_text": false}}
    "EXPORT_MAX_SUBJECTS_PER_YEAR": 100_000,  # a recipient's people in a year stay below it
}

# A setting's type is its default's (None defaults are strings).
_LISTS = {k for k, v in DEFAULTS.items() if isinstance(v, list)}
_INTS = {k for k, v in DEFAULTS.items() if type(v) is int}
_FLOATS = {k for k, v in DEFAULTS.items() if type(v) is float}
_BOOLS = {k for k, v in DEFAULTS.items() if type(v) is bool}
# environment name -> config key, where they differ
_ENV_NAMES = {
    "GATEWAY_SECRET_KEYS": "SECRET_KEYS",
    "GATEWAY_COOKIE_SECURE": "COOKIE_SECURE",
    "GATEWAY_SDK_DIR": "SDK_DIR",
    "GATEWAY_PUBLIC_URL": "PUBLIC_URL",
    "GATEWAY_SMS_WEBHOOK_SECRET": "SMS_WEBHOOK_SECRET",
    "GATEWAY_RECEIPT_KEYS": "RECEIPT_KEYS",
    "GATEWAY_RATE_LIMITS": "RATE_LIMITS",
    "GATEWAY_DEV": "DEV",
    "GATEWAY_EXPORT_KEY": "EXPORT_KEY",
    "GATEWAY_EXPORT_RECIPIENTS": "EXPORT_RECIPIENTS",
}


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings present in the environment, converted to their types."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    renamed = set(_ENV_NAMES.values())
    names = {k: k for k in DEFAULTS if k not in renamed} | _ENV_NAMES
    for env_name, key in names.items():
        raw = env.get(env_name)
        if raw is None or raw == "":
            continue
        out[key] = _convert(env_name, key, raw)
    return out


def _convert(env_name: str, key: str, raw: str) -> Any:
    if key in _LISTS:
        return [part.strip() for part in raw.split(",") if part.strip()]
    try:
        if key in _INTS:
            value = int(raw)
            if value < 0:
                raise ValueError("must not be negative")
            return value
        if key in _FLOATS:
            return float(raw)
    except ValueError as e:
        raise ConfigError(f"{env_name}={raw!r}: {e}") from e
    if key in _BOOLS:
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{env_name}={raw!r}: expected true or false")
    return raw
