"""``create_app(config)``: one gateway, its three layers wired together (the only module that
knows all three).

Nothing is opened at import time: the store's client, the GeoIP reader and the parsers
belong to the application the factory returns, so tests and workers each get their own.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .core import catalogue as catalogue_mod
from .core import retention
from .core.accounts import Accounts
from .core.apikeys import ApiKeys
from .core.audiences.indexer import Indexer
from .core.audiences.service import Audiences
from .core.audiences.service import Settings as AudienceSettings
from .core.audiences.view import IndexView
from .core.catalogue import NECESSARY, AudienceRules
from .core.config import DEFAULTS
from .core.enrich import Enricher
from .core.errors import ConfigError, StorageUnavailable
from .core.events import EventCodec
from .core.geoip import GeoLocator, default_db_path
from .core.links import MailTokens
from .core.metrics import Metrics
from .core.once import write_once
from .core.ratelimit import AddressKeys, limits_from_config
from .core.receipts import Receipts, development_key
from .core.records import Lifetimes
from .core.savedlogin import SavedLogins
from .core.schemas import consent_schema
from .core.sessions import Sessions
from .core.sms import SmsLinks
from .core.tokens import Tokens
from .core.useragent import UserAgentParser
from .storage import open_storage
from .storage.periodic import Periodic
from .web import (
    access,
    accounts,
    assets,
    audiences,
    batch,
    beacon,
    collect,
    consent,
    demo,
    erasure,
    errors,
    exports,
    home,
    identity,
    logins,
    mailing,
    marketers,
    openapi,
    ops,
    optout,
    proofs,
    senders,
    sms,
    subjects,
)
from .web import metrics as web_metrics
from .web.identity import CookiePolicy
from .web.origins import OriginPolicy
from .web.services import Services

__all__ = ["create_app"]

log = logging.getLogger(__name__)

# how often each serving process looks for withdrawal deletions a gateway left (_purges)
PURGE_SWEEP_S = 15.0

DAY_MS = 86_400_000


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build a gateway. ``config`` overrides ``config.DEFAULTS``; ``REDIS_URL`` is required."""
    app = Flask("gateway.web", instance_relative_config=True, static_folder=None)
    app.config.update(DEFAULTS)
    if config:
        app.config.update(config)
    cfg = app.config
    if not cfg.get("REDIS_URL"):
        raise ValueError("REDIS_URL is required (the gateway command starts an embedded server)")
    if cfg.get("INSTANCE_PATH"):
        app.instance_path = str(cfg["INSTANCE_PATH"])

    svc = _services(app)
    app.extensions["gateway"] = svc
    _wire_web(app, svc)
    return app


def _services(app: Flask) -> Services:
    """The core's objects and the storage, built from the configuration."""
    cfg = app.config
    cat = catalogue_mod.load(cfg.get("CATALOGUE_PATH"))
    for channel in (mailing.EMAIL, mailing.SMS):
        if channel not in cat.channels:
            raise ConfigError(f"the catalogue's advertising purpose lacks the channel {channel}")
    dev = bool(cfg["DEV"])
    keys = list(cfg["SECRET_KEYS"]) or [_instance_key(Path(app.instance_path), dev)]
    receipt_keys = list(cfg["RECEIPT_KEYS"]) or [development_key(Path(app.instance_path), dev)]
    # A subject's keys are kept as long as the longest retention of anything it may hold.
    longest = max(p.retention_days for p in cat.purposes.values())
    proof = longest + int(cfg["LEDGER_PROOF_DAYS"])
    metrics = Metrics()
    store = open_storage(
        cfg,
        lifetimes=Lifetimes(
            holding_ms=proof * DAY_MS,
            bare_ms=cat.purposes[NECESSARY].retention_days * DAY_MS,
            suppression_ms=proof * DAY_MS,
            index_ms=longest * DAY_MS,
        ),
        limits=limits_from_config(cfg),
        count_rewrite=lambda result: metrics.erasure_rewrites.labels(result=result).inc(),
        activity=cat.audiences.activity if cat.audiences else (),
    )
    try:
        store.check_layout()
    except StorageUnavailable as e:
        log.warning("the store does not answer yet (%s): its layout is checked later", e)
    geo = GeoLocator(cfg["GEOIP_DB"] or default_db_path())
    svc = Services(
        catalogue=cat,
        store=store,
        tokens=Tokens(keys),
        mail=MailTokens(keys, cat.channels),
        sms=SmsLinks(store.codes, keys, int(cfg["SMS_CODE_TTL_S"]), str(cfg["SMS_COUNTRY_CODE"])),
        apikeys=ApiKeys(store.apikeys),
        logins=SavedLogins(store.logins, keys, int(cfg["SAVED_LOGIN_MAX_S"])),
        accounts=Accounts(store.accounts, cat, keys),
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
        metrics=metrics,
        consent_schema=consent_schema(cat),
        min_grant={p: i + 1 for p, i in cat.last_change.items()},
        optional_purposes=frozenset(cat.optional_purposes),
        config=dict(cfg),
        origins=OriginPolicy(cfg["ALLOWED_ORIGINS"]),
        cookies=CookiePolicy(
            secure=bool(cfg["COOKIE_SECURE"]),
            max_age_s=int(cfg["VID_MAX_AGE_DAYS"]) * 86_400,
            domain=cfg["COOKIE_DOMAIN"],
        ),
        policy_json=json.dumps(
            cat.policy_document() | {"policy_url": cfg["POLICY_URL"]}, ensure_ascii=False
        ).encode("utf-8"),
        sessions=Sessions(keys, store.sessions),
        closers=[geo.close, store.close],
    )
    if cat.audiences is not None:
        _audiences(svc, cat.audiences)
    _retention(svc)
    _purges(svc)
    return svc


def _retention(svc: Services) -> None:
    """Retention by itself (clause 4): every serving process looks now and then, and one of
    all those sharing the store runs it once per ``RETENTION_EVERY_S`` (storage/retention.py)."""
    every = float(svc.config["RETENTION_EVERY_S"])
    if every <= 0:
        return
    look = min(max(every / 10, 0.05), 60.0)  # a run is late by at most this

    def look_once() -> None:
        retention.run(svc.store, svc.catalogue, every)

    job = Periodic("retention", look, look_once)
    svc.closers[:0] = [job.stop]  # before the store closes
    svc.jobs.append(job)


def _purges(svc: Services) -> None:
    """A withdrawal deletes what was kept under it (clause 2(3), PIPL art. 47): a subject that
    stored much is purged in steps, and a gateway that stops between them leaves the rest
    recorded in the store. Every serving process looks for those every ``PURGE_SWEEP_S`` and
    finishes them (storage/consent.py: each claimed by one)."""

    def sweep() -> None:
        svc.store.finish_purges()

    job = Periodic("purges", PURGE_SWEEP_S, sweep)
    svc.closers[:0] = [job.stop]  # before the store closes
    svc.jobs.append(job)


def _audiences(svc: Services, rules: AudienceRules) -> None:
    """Marketers' counts: a reader's view and the query API, and the indexer, whose rounds
    run on a thread of each serving process (one holds the lease at a time)."""
    cfg, store, metrics = svc.config, svc.store, svc.metrics
    view = IndexView(store.audiences, rules)
    settings = AudienceSettings(
        k=int(cfg["AUDIENCE_K"]),
        epsilon=float(cfg["AUDIENCE_EPSILON"]),
        breakdown_epsilon=float(cfg["AUDIENCE_BREAKDOWN_EPSILON"]),
        monthly_budget=float(cfg["AUDIENCE_MONTHLY_BUDGET"]),
        recent=int(cfg["AUDIENCE_RECENT"]),
    )
    reader = metrics.audience_index_bytes.labels(holder="reader")
    svc.audiences = Audiences(store.audiences, view, rules, settings, on_read=reader.set)
    holder = metrics.audience_index_bytes.labels(holder="indexer")
    svc.indexer = Indexer(
        store.audiences,
        store,
        store.accounts,
        svc.catalogue,
        svc.min_grant,
        on_save=holder.set,
        on_read=metrics.audience_feed_entries.inc,
    )
    # Closed before the store: a lease it holds (its thread's, or a caller's rounds) is given
    # up at once rather than left to lapse.
    svc.closers[:0] = [svc.indexer.close]
    if cfg["AUDIENCE_INDEXER"]:
        every = float(cfg["AUDIENCE_INDEX_EVERY_S"])
        job = Periodic("audience-indexer", every, svc.indexer.catch_up)
        svc.closers[:0] = [job.stop]  # the thread first, then the lease
        svc.jobs.append(job)


def _wire_web(app: Flask, svc: Services) -> None:
    """The web layer on ``app``: the pixel in front, middleware, hooks and blueprints."""
    cfg, store = app.config, svc.store

    beacon.install(app, svc)  # inside ProxyFix: it sees the client's address
    if cfg["TRUSTED_PROXIES"]:
        n = int(cfg["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    web_metrics.init_app(app, svc.metrics)
    # The store's own periodic work (the AOF rewrite after erasures), retention and the
    # indexer run in processes that serve: their threads start with the first request (the
    # pixel's too: beacon.py).
    app.before_request(store.ready)  # a layout unchecked at start (the store was away)
    app.before_request(svc.start_jobs)
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
        accounts,
        audiences,
        marketers,
        openapi,
        erasure,
        exports,
        home,  # GET /: the landing page under --dev, else 404
        *((demo,) if cfg["DEV"] else ()),  # the demo shop's backend: /demo/login, /demo/logout
    )
    for module in modules:
        app.register_blueprint(module.bp)

    @app.after_request
    def _cors(resp: Response) -> Response:
        """Flask answers OPTIONS itself; allowed origins get the CORS headers here (never the
        marketers' dashboard: its answers are for its own page only)."""
        if not request.path.startswith(marketers.PATH):
            svc.origins.add_cors(request, resp)
        return resp


def _instance_key(instance: Path, dev: bool = False) -> str:
    """A secret generated once per instance folder, so cookies survive restarts.

    Several workers may start at once: the first publishes the file, the others read it
    (``once.write_once``). Routine under ``--dev``; in production a warning, since every
    gateway sharing a store must sign with the same keys (``GATEWAY_SECRET_KEYS``).
    """
    path = instance / "secret_key"
    if path.is_file():
        return path.read_text().strip()
    made, new = write_once(path, (secrets.token_urlsafe(48) + "\n").encode())
    if new:
        if dev:
            log.info("GATEWAY_SECRET_KEYS not set: generated a key in %s", path)
        else:
            log.warning(
                "GATEWAY_SECRET_KEYS not set: generated a key in %s; gateways sharing a store "
                "need the same keys (docs/configuration.md)",
                path,
            )
    return made.decode().strip()
