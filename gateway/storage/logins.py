"""Saved-login records: ``sl:{<selector>}`` hashes and the sets that index them.

A record holds ``sid``, ``acct`` (the keyed hash of the account), ``sealed`` (the account,
encrypted), ``nonce``, ``gen``, ``issued`` and ``expires`` (ms; the key expires then); the
subject's set (in its slot group) and the account's set (``acct:{<hash>}:logins``) list its
selector, so that withdrawing ``saved_login`` or logging out everywhere finds every login.
The token scheme itself (macs, seals, generations) is ``core/savedlogin.py``; a resume is one
script on the record alone (``lua/resume.lua``), so it works on a cluster, and the indexes
are written around it: created before a record (an index naming a missing record is
harmless), emptied after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from ..core.records import LoginRecord
from .client import Client, translating
from .keys import Keys


class RedisLoginStore:
    def __init__(self, client: Client, keys: Keys, resume_script: Any) -> None:
        self.r = client
        self.keys = keys
        self._resume = resume_script

    @translating
    def create(
        self,
        selector: str,
        record: Mapping[str, str | int],
        account_mac: str,
        index_ttl_ms: int,
    ) -> None:
        sid = str(record["sid"])
        pipe = self.r.pipeline(transaction=False)
        for index in (self.keys.subject(sid, "logins"), self.keys.account_logins(account_mac)):
            pipe.sadd(index, selector)
            pipe.pexpire(index, index_ttl_ms, gt=True)
            pipe.pexpire(index, index_ttl_ms, nx=True)
        pipe.execute()
        key = self.keys.login(selector)
        pipe = self.r.pipeline(transaction=False)
        mapping: dict[Any, Any] = dict(record)
        pipe.hset(key, mapping=mapping)
        pipe.pexpireat(key, int(record["expires"]))
        pipe.execute()

    @translating
    def read(self, selector: str, *fields: str) -> list[str | None]:
        return cast("list[str | None]", self.r.hmget(self.keys.login(selector), list(fields)))

    @translating
    def resume(
        self, selector: str, generation: str, nonce: str, resealed: str, new_mac: str
    ) -> list[str]:
        """``lua/resume.lua``: ['ok', generation, expires, old account hash], ['reused'],
        ['expired'] or ['unknown']."""
        answer = self._resume(
            keys=[self.keys.login(selector)], args=[generation, nonce, resealed, new_mac]
        )
        return [str(a) for a in answer]

    @translating
    def move_account(self, selector: str, old_mac: str, new_mac: str, ttl_ms: int) -> None:
        """A login's entry moved from one account index to another (a key rotation)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.srem(self.keys.account_logins(old_mac), selector)
        new = self.keys.account_logins(new_mac)
        pipe.sadd(new, selector)
        pipe.pexpire(new, ttl_ms, gt=True)
        pipe.pexpire(new, ttl_ms, nx=True)
        pipe.execute()

    @translating
    def of_subject(self, sid: str) -> list[str]:
        return sorted(map(str, self.r.smembers(self.keys.subject(sid, "logins"))))

    @translating
    def of_accounts(self, account_macs: Sequence[str]) -> list[str]:
        """The selectors listed under any of the account hashes (one per configured key)."""
        pipe = self.r.pipeline(transaction=False)
        for mac in account_macs:
            pipe.smembers(self.keys.account_logins(mac))
        found: set[str] = set()
        for members in pipe.execute():
            found |= set(members)
        return sorted(found)

    @translating
    def revoke(self, selectors: Sequence[str]) -> int:
        """Delete the records and their index entries; how many records existed."""
        if not selectors:
            return 0
        read = self.r.pipeline(transaction=False)
        for selector in selectors:
            read.hmget(self.keys.login(selector), "acct", "sid")
        pipe = self.r.pipeline(transaction=False)
        gone = 0
        for selector, (account_mac, sid) in zip(selectors, read.execute(), strict=True):
            pipe.delete(self.keys.login(selector))
            gone += sid is not None
            if account_mac is not None:
                pipe.srem(self.keys.account_logins(account_mac), selector)
            if sid is not None:
                pipe.srem(self.keys.subject(sid, "logins"), selector)
        pipe.execute()
        return gone

    @translating
    def records(self, sid: str) -> list[LoginRecord]:
        selectors = self.of_subject(sid)
        pipe = self.r.pipeline(transaction=False)
        for selector in selectors:
            pipe.hmget(self.keys.login(selector), "sid", "sealed", "gen", "issued", "expires")
        found = []
        for selector, (owner, sealed, gen, issued, expires) in zip(
            selectors, pipe.execute(), strict=True
        ):
            if owner is None or sealed is None:  # expired since it was listed
                continue
            found.append(LoginRecord(selector, owner, sealed, int(gen), int(issued), int(expires)))
        return found
