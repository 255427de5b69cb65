"""The objects one application instance works with, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app
from marshmallow import Schema

from .catalogue import Catalogue
from .cookies import Tokens
from .enrich import Enricher
from .events import EventCodec
from .identity import CookiePolicy
from .metrics import Metrics
from .origins import OriginPolicy
from .ratelimit import AddressKeys
from .receipts import Receipts
from .store import Store

if TYPE_CHECKING:
    from .apikeys import ApiKeys
    from .logins import SavedLogins
    from .mailing import MailTokens
    from .sms import SmsLinks


@dataclass
class Services:
    catalogue: Catalogue
    store: Store
    tokens: Tokens
    mail: MailTokens  # signed email and unsubscribe links
    sms: SmsLinks  # SMS unsubscribe codes and reply numbers
    apikeys: ApiKeys  # server API keys (senders, the platform's backend)
    logins: SavedLogins  # saved-login tokens
    receipts: Receipts  # signs receipts (JWS, Ed25519)
    addresses: AddressKeys  # client address -> its rate-limit bucket's name
    codec: EventCodec
    enricher: Enricher
    origins: OriginPolicy
    cookies: CookiePolicy
    metrics: Metrics
    consent_schema: Schema
    min_grant: dict[str, int]  # per purpose: the smallest g: value that is consent today
    optional_purposes: frozenset[str]
    policy_json: bytes
    config: dict[str, Any]
    closers: list[Any]


def services() -> Services:
    return current_app.extensions["gateway"]
