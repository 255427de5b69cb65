"""Accounts: ``acct:{<mac>}:subjects`` (a sorted set of the subjects linked to a platform
account, each scored by when its link ends), ``acct:{<mac>}:traits`` (a hash of its coarse
traits) and ``<g>:s:<sid>:account`` (the account a subject is linked to), where ``<mac>`` is
the account's keyed hash (``core/accounts.py``): the account itself is never stored.

The account's keys and the subject's lie in different slots, so a link is two steps, each
atomic on its slot (``lua/account_*.lua``): the subject's own key first (``SET ... GET``, which
also says which account it leaves), then the account's set, checked again against the own key
so that a concurrent link elsewhere never leaves the subject in two sets. Each member ends
with its own link, the set and the traits with the newest link: no entry outlives the
subject's own key, and traits of an account nobody is linked to are never kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..core.errors import NotLinked
from .client import Client, lua, translating
from .keys import Keys


class RedisAccountStore:
    def __init__(self, client: Client, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._join = client.register_script(lua("account_join"))
        self._leave_script = client.register_script(lua("account_leave"))
        self._traits = client.register_script(lua("account_traits"))
        self._own_delete = client.register_script(lua("account_own"))
        self._own_set = client.register_script(lua("account_link"))

    def _own(self, sid: str) -> str:
        return self.keys.subject(sid, "account")

    def _pair(self, account_mac: str) -> list[str]:
        return [self.keys.account_subjects(account_mac), self.keys.account_traits(account_mac)]

    @translating
    def link(self, account_mac: str, sid: str, ttl_ms: int) -> str | None:
        own = [self._own(sid), self.keys.audience_of(sid, "chg")]
        before = self._own_set(keys=own, args=[account_mac, sid, ttl_ms]) or None
        self._join(keys=self._pair(account_mac), args=[sid, ttl_ms])
        if self.r.get(self._own(sid)) != account_mac:  # linked elsewhere meanwhile
            self._leave(account_mac, sid)
        if before is not None and before != account_mac:
            self._leave(str(before), sid)
            self._tell_audiences(str(before))
        self._tell_audiences(account_mac)
        return None if before is None or before == account_mac else str(before)

    @translating
    def unlink(self, account_mac: str, sid: str) -> bool:
        return self.leave(account_mac, sid)[0]

    @translating
    def leave(self, account_mac: str, sid: str) -> tuple[bool, bool]:
        """``unlink``, saying also whether the account's traits went with its last subject."""
        own = [self._own(sid), self.keys.audience_of(sid, "chg")]
        self._own_delete(keys=own, args=[account_mac, sid])
        was, traits = self._leave_both(account_mac, sid)
        self._tell_audiences(account_mac)
        return was, traits

    def _tell_audiences(self, account_mac: str) -> None:
        """The account's subjects or traits changed: the audience index reads them again.
        (The subject's own change entry is written with its link, atomically; the account's
        set changes in another slot just after, so this entry follows it: an indexer reading
        the first before the set changed reads the account again here.)"""
        shard = self.keys.group_of(account_mac)
        news = {"k": "t", "a": account_mac}
        self.r.xadd(self.keys.audience(shard, "chg"), news, maxlen=100_000)  # type: ignore[arg-type]

    def _leave(self, account_mac: str, sid: str) -> bool:
        return self._leave_both(account_mac, sid)[0]

    def _leave_both(self, account_mac: str, sid: str) -> tuple[bool, bool]:
        was, traits = self._leave_script(keys=self._pair(account_mac), args=[sid])
        return bool(was), bool(traits)

    @translating
    def account_of(self, sid: str) -> str | None:
        mac = self.r.get(self._own(sid))
        return None if mac is None else str(mac)

    @translating
    def has_data(self, account_mac: str) -> bool:
        pipe = self.r.pipeline(transaction=False)
        for key in self._pair(account_mac):
            pipe.exists(key)
        return any(pipe.execute())

    @translating
    def set_traits(
        self, account_mac: str, values: Mapping[str, str], removed: Sequence[str]
    ) -> dict[str, str]:
        pairs = [x for item in values.items() for x in item]
        answer = self._traits(keys=self._pair(account_mac), args=[len(values), *pairs, *removed])
        if answer[0] == "none":
            raise NotLinked("no subject is linked to this account: its traits are not kept")
        flat = [str(x) for x in answer[1:]]
        # The audience index is told after the change (another slot): a failure here is a
        # 503, and the caller's retry of the same PUT tells it again.
        self._tell_audiences(account_mac)
        return dict(zip(flat[::2], flat[1::2], strict=True))

    @translating
    def subjects(self, account_mac: str) -> list[str]:
        now_ms = self.r.time()
        ms = int(now_ms[0]) * 1000 + int(now_ms[1]) // 1000
        found = self.r.zrangebyscore(self.keys.account_subjects(account_mac), ms, "+inf")
        return [str(s) for s in found]

    @translating
    def traits(self, account_mac: str) -> dict[str, str]:
        found = self.r.hgetall(self.keys.account_traits(account_mac))
        return {str(k): str(v) for k, v in found.items()}
