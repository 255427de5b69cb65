"""The collection gateway: ``create_app(config)`` builds one instance.

Nothing is opened at import time: the Redis client, the GeoIP reader and the parsers belong
to the application the factory returns, so tests and workers each get their own.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from . import (
    access,
    assets,
    batch,
    beacon,
    collect,
    compaction,
    consent,
    demo,
    erasure,
    errors,
    home,
    identity,
    logins,
    mailing,
    ops,
    optout,
    proofs,
    senders,
    sms,
    subjects,
)
from . import catalogue as catalogue_mod
from .apikeys import ApiKeys
from .catalogue import NECESSARY
from .config import DEFAULTS
from .cookies import Tokens
from .enrich import Enricher
from .events import EventCodec
from .geoip import GeoLocator, default_db_path
from .identity import CookiePolicy
from .metrics import Metrics
from .origins import OriginPolicy
from .ratelimit import AddressKeys, limits_from_config
from .receipts import Receipts, development_key
from .schemas import consent_schema
from .services import Services
from .store import DAY_MS, MAX_PURPOSES, Lifetimes, Store, connect
from .useragent import UserAgentParser

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build a gateway. ``config`` overrides ``config.DEFAULTS``; ``REDIS_URL`` is required."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(DEFAULTS)
    if config:
        app.config.update(config)
    cfg = app.config
    if not cfg.get("REDIS_URL"):
        raise ValueError("REDIS_URL is required (python -m gateway starts an embedded server)")
    if cfg.get("INSTANCE_PATH"):
        app.instance_path = str(cfg["INSTANCE_PATH"])

    cat = catalogue_mod.load(cfg.get("CATALOGUE_PATH"))
    if len(cat.optional_purposes) > MAX_PURPOSES:
        raise ValueError(f"the store handles at most {MAX_PURPOSES} optional purposes")
    dev = bool(cfg["DEV"])
    keys = list(cfg["SECRET_KEYS"]) or [_instance_key(Path(app.instance_path), dev)]
    receipt_keys = list(cfg["RECEIPT_KEYS"]) or [development_key(Path(app.instance_path), dev)]
    # A subject's keys are kept as long as the longest retention of anything it may hold.
    longest = max(p.retention_days for p in cat.purposes.values())
    tokens = Tokens(keys)
    store = Store(
        connect(
            cfg["REDIS_URL"],
            connect_timeout=cfg["REDIS_CONNECT_TIMEOUT_S"],
            socket_timeout=cfg["REDIS_SOCKET_TIMEOUT_S"],
        ),
        shards=cfg["STREAM_SHARDS"],
        dedup_window_s=cfg["DEDUP_WINDOW_S"],
        aof_timeout_ms=cfg["AOF_TIMEOUT_MS"],
        index_ttl_s=longest * 86_400,
        lifetimes=Lifetimes(
            holding_ms=(longest + int(cfg["LEDGER_PROOF_DAYS"])) * DAY_MS,
            bare_ms=cat.purposes[NECESSARY].retention_days * DAY_MS,
            suppression_ms=(longest + int(cfg["LEDGER_PROOF_DAYS"])) * DAY_MS,
        ),
        limits=limits_from_config(cfg),
    )
    geo_path = cfg["GEOIP_DB"] or default_db_path()
    geo = GeoLocator(geo_path)
    metrics = Metrics()
    compactor = compaction.ErasureCompactor(store.r, metrics, cfg["ERASURE_COMPACT_S"])
    svc = Services(
        catalogue=cat,
        store=store,
        tokens=tokens,
        mail=mailing.MailTokens(keys),
        sms=sms.SmsLinks(store.r, keys, int(cfg["SMS_CODE_TTL_S"]), str(cfg["SMS_COUNTRY_CODE"])),
        apikeys=ApiKeys(store.r),
        logins=logins.SavedLogins(store.r, keys, int(cfg["SAVED_LOGIN_MAX_S"])),
        receipts=Receipts(receipt_keys),
        addresses=AddressKeys(keys[0]),
        codec=EventCodec(
            cat,
            max_events=cfg["MAX_EVENTS_PER_REQUEST"],
            max_depth=cfg["MAX_JSON_DEPTH"],
            max_age_s=cfg["EVENT_MAX_AGE_S"],
            max_skew_s=cfg["EVENT_MAX_SKEW_S"],
        ),
        enricher=Enricher(cat, UserAgentParser(cfg["UA_CACHE_SIZE"]), geo),
        origins=OriginPolicy(cfg["ALLOWED_ORIGINS"]),
        cookies=CookiePolicy(
            secure=bool(cfg["COOKIE_SECURE"]),
            max_age_s=int(cfg["VID_MAX_AGE_DAYS"]) * 86_400,
            domain=cfg["COOKIE_DOMAIN"],
        ),
        metrics=metrics,
        consent_schema=consent_schema(cat),
        min_grant={p: i + 1 for p, i in cat.last_change.items()},
        optional_purposes=frozenset(cat.optional_purposes),
        policy_json=json.dumps(
            cat.policy_document() | {"policy_url": cfg["POLICY_URL"]}, ensure_ascii=False
        ).encode("utf-8"),
        config=dict(cfg),
        closers=[compactor.stop, geo.close, store.close],
    )
    app.extensions["gateway"] = svc

    beacon.install(app, svc)  # inside ProxyFix: it sees the client's address
    if cfg["TRUSTED_PROXIES"]:
        n = int(cfg["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    metrics.init_app(app)
    compaction.install(app, compactor)  # its thread starts with the first request served
    errors.register(app)
    identity.init_app(app)
    modules = (
        consent,
        proofs,
        collect,
        batch,
        subjects,
        access,
        ops,
        assets,
        optout,
        mailing,
        senders,
        sms,
        logins,
        erasure,
        home,  # GET /: the landing page under --dev, else 404
        *((demo,) if cfg["DEV"] else ()),  # the demo shop's backend: /demo/login, /demo/logout
    )
    for module in modules:
        app.register_blueprint(module.bp)

    @app.after_request
    def _cors(resp: Response) -> Response:
        """Flask answers OPTIONS itself; allowed origins get the CORS headers here."""
        svc.origins.add_cors(request, resp)
        return resp

    return app


def _instance_key(instance: Path, dev: bool = False) -> str:
    """A secret generated once per instance folder, so cookies survive restarts.

    Several workers may start at once: the first creates the file exclusively, the others
    read what it wrote. Routine under ``--dev``; in production a warning, since every
    gateway sharing a store must sign with the same keys (``GATEWAY_SECRET_KEYS``).
    """
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            key = path.read_text().strip()
            if key:
                return key
            import time

            time.sleep(0.01)
        raise RuntimeError(f"{path} exists but is empty") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    if dev:
        log.info("GATEWAY_SECRET_KEYS not set: generated a key in %s", path)
    else:
        log.warning(
            "GATEWAY_SECRET_KEYS not set: generated a key in %s; gateways sharing a store "
            "need the same keys (docs/configuration.md)",
            path,
        )
    return key
