"""The core's objects for one application, built once by ``create_app`` (``app.py``).

The core's functions take this ``Gateway`` (the web layer's ``Services`` extends it with its
own): the catalogue, the store behind its interface, the signers and parsers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .catalogue import Catalogue
from .enrich import Enricher
from .events import EventCodec
from .metrics import Metrics
from .ports import Storage
from .ratelimit import AddressKeys
from .receipts import Receipts
from .tokens import Tokens

if TYPE_CHECKING:
    from marshmallow import Schema

    from .accounts import Accounts
    from .apikeys import ApiKeys
    from .audiences.indexer import Indexer
    from .audiences.service import Audiences
    from .links import MailTokens
    from .savedlogin import SavedLogins
    from .sms import SmsLinks


@dataclass
class Gateway:
    catalogue: Catalogue
    store: Storage
    tokens: Tokens
    mail: MailTokens  # signed email open and unsubscribe links
    sms: SmsLinks  # SMS unsubscribe codes and reply numbers
    apikeys: ApiKeys  # server API keys (senders, the platform's backend)
    logins: SavedLogins  # saved-login tokens
    accounts: Accounts  # subjects linked to platform accounts, accounts' coarse traits
    receipts: Receipts  # signs receipts (JWS, Ed25519)
    addresses: AddressKeys  # client address -> its rate-limit buckets' name
    codec: EventCodec
    enricher: Enricher
    metrics: Metrics
    consent_schema: Schema
    min_grant: dict[str, int]  # per purpose: the smallest level that is consent today
    optional_purposes: frozenset[str]
    config: dict[str, Any]
    audiences: Audiences | None = None  # marketers' counts (None: no [audiences] in the catalogue)
    indexer: Indexer | None = None  # keeps the audience index (one gateway at a time)
