"""Accounts: ``acct:{<mac>}:subjects`` (a set of the subjects linked to a platform account),
``acct:{<mac>}:traits`` (a hash of its coarse traits) and ``<g>:s:<sid>:account`` (the
account a subject is linked to), where ``<mac>`` is the account's keyed hash
(``core/accounts.py``): the account itself is never stored.

The account's keys and the subject's lie in different slots, so a link is a few commands, not
one script: the account's set is written first, so that a subject's ``account`` key never
names an account that does not list it; a reader trusts the subject's key and the set only
together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .client import Client, translating
from .keys import Keys


class RedisAccountStore:
    def __init__(self, client: Client, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    def _own(self, sid: str) -> str:
        return self.keys.subject(sid, "account")

    @translating
    def link(self, account_mac: str, sid: str, ttl_ms: int) -> str | None:
        before = self.r.get(self._own(sid))
        subjects = self.keys.account_subjects(account_mac)
        pipe = self.r.pipeline(transaction=False)
        pipe.sadd(subjects, sid)
        pipe.pexpire(subjects, ttl_ms)
        pipe.pexpire(self.keys.account_traits(account_mac), ttl_ms)
        pipe.execute()
        self.r.set(self._own(sid), account_mac, px=ttl_ms)
        if before is not None and before != account_mac:
            self._leave(str(before), sid)
            return str(before)
        return None

    @translating
    def unlink(self, account_mac: str, sid: str) -> bool:
        own = self._own(sid)
        if self.r.get(own) == account_mac:
            self.r.delete(own)
        return self._leave(account_mac, sid)

    def _leave(self, account_mac: str, sid: str) -> bool:
        subjects = self.keys.account_subjects(account_mac)
        pipe = self.r.pipeline(transaction=False)
        pipe.srem(subjects, sid)
        pipe.scard(subjects)
        was, left = pipe.execute()
        if not left:  # nobody left to describe: the traits go too
            self.r.delete(self.keys.account_traits(account_mac))
        return bool(was)

    @translating
    def account_of(self, sid: str) -> str | None:
        mac = self.r.get(self._own(sid))
        return None if mac is None else str(mac)

    @translating
    def has_data(self, account_mac: str) -> bool:
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(self.keys.account_subjects(account_mac))
        pipe.exists(self.keys.account_traits(account_mac))
        return any(pipe.execute())

    @translating
    def set_traits(
        self, account_mac: str, values: Mapping[str, str], removed: Sequence[str], ttl_ms: int
    ) -> dict[str, str]:
        key = self.keys.account_traits(account_mac)
        pipe = self.r.pipeline(transaction=False)
        if values:
            pipe.hset(key, mapping=dict(values))  # type: ignore[arg-type]
        if removed:
            pipe.hdel(key, *removed)
        pipe.pexpire(key, ttl_ms)
        pipe.hgetall(key)
        found: dict[Any, Any] = pipe.execute()[-1]
        return {str(k): str(v) for k, v in found.items()}

    @translating
    def traits(self, account_mac: str) -> dict[str, str]:
        found = self.r.hgetall(self.keys.account_traits(account_mac))
        return {str(k): str(v) for k, v in found.items()}
