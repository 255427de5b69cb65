"""Platform accounts, as the audience counts see them: which subjects (browsers, APP installs)
an account logged in on, and its coarse company traits (clause 2(1): only the ranges and
categories the catalogue lists, never a name, a licence number or a contact).

People, not devices: linking lets audience counts take an account's subjects as one person.
The account is kept only as a keyed hash (HMAC-SHA256 under the gateway's secret key, context
``gateway.account:``), so a copy of the store names no account; after a key rotation an
account already kept under an older key's hash keeps that hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from .catalogue import Catalogue
from .errors import ValidationFailed
from .ports import AccountStore

_CONTEXT = b"gateway.account:"
DAY_MS = 86_400_000
MAX_ACCOUNT = 256


class Accounts:
    def __init__(self, store: AccountStore, cat: Catalogue, keys: Sequence[str | bytes]) -> None:
        self.store = store
        self.cat = cat
        self.keys = [k.encode() if isinstance(k, str) else k for k in keys]
        # Links and traits live as long as the longest retention among the traits' purposes,
        # renewed by every write.
        days = max((cat.purposes[t.purpose].retention_days for t in cat.traits.values()), default=0)
        self.ttl_ms = max(days, 1) * DAY_MS

    def account(self, value: object) -> str:
        """An account as the platform names it: 1-256 characters, printable, and no path
        segment that a client or a server would rewrite (empty, ``.``, ``..``: ``a//b`` is
        redirected, ``/x/../`` resolved away) nor U+FFFD (what undecodable bytes in a path
        become, so that two different accounts never share a hash); 400 otherwise."""
        if (
            not isinstance(value, str)
            or not 0 < len(value) <= MAX_ACCOUNT
            or not value.isprintable()
            or "\ufffd" in value
            or any(part in ("", ".", "..") for part in value.split("/"))
        ):
            raise ValidationFailed(
                "not an account",
                fields={
                    "account": f"1-{MAX_ACCOUNT} printable characters, no empty, '.' or "
                    "'..' path segment"
                },
            )
        return value

    def _mac(self, account: str) -> str:
        """The account's hash: under the newest key, unless kept under an older one."""
        macs = [
            hmac.new(key, _CONTEXT + account.encode("utf-8"), hashlib.sha256).hexdigest()
            for key in self.keys
        ]
        for mac in macs[1:]:
            if self.store.has_data(mac):
                return mac
        return macs[0]

    def link(self, account: str, sid: str) -> None:
        self.store.link(self._mac(account), sid, self.ttl_ms)

    def unlink(self, account: str, sid: str) -> bool:
        return self.store.unlink(self._mac(account), sid)

    def traits_body(self, body: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
        """The traits a ``PUT`` body sets and those it removes (null); 400 naming anything the
        catalogue does not list, key or value."""
        unknown = sorted(k for k in body if k not in self.cat.traits)
        if unknown:
            raise ValidationFailed(
                "only the catalogue's coarse traits are kept about an account",
                fields={k: f"not a trait (traits: {', '.join(self.cat.traits)})" for k in unknown},
            )
        values: dict[str, str] = {}
        removed: list[str] = []
        bad: dict[str, str] = {}
        for name, value in body.items():
            if value is None:
                removed.append(name)
                continue
            found = self.cat.traits[name].normalise(value)
            if found is None:
                bad[name] = "one of: " + ", ".join(self.cat.traits[name].values)
            else:
                values[name] = found
        if bad:
            raise ValidationFailed("a trait's value is not one the catalogue lists", fields=bad)
        if not values and not removed:
            raise ValidationFailed("no trait given", fields={"traits": ", ".join(self.cat.traits)})
        return values, removed

    def set_traits(self, account: str, body: Mapping[str, Any]) -> dict[str, str]:
        values, removed = self.traits_body(body)
        return self.store.set_traits(self._mac(account), values, removed)

    def held(self, sid: str) -> dict[str, Any]:
        """What ``GET /v1/subject`` shows: whether the subject is linked to an account (never
        which: only its hash is kept), and that account's traits."""
        mac = self.store.account_of(sid)
        if mac is None:
            return {"linked": False, "traits": {}}
        return {"linked": True, "traits": self.store.traits(mac)}
