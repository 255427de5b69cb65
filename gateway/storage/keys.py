"""Where things are kept: every key name, and the slot groups that make a cluster work.

A write is one Lua script, and a script may only touch keys of one hash slot on Redis
Cluster. So a subject's keys and every key its writes touch (its consent state, ledger,
dedup ids, index, the purpose streams its event parts go to, the suppression lists it joins)
carry one hash tag: its *slot group*'s. There are ``SLOT_GROUPS`` groups (64 by default); a
subject belongs to group ``crc32(id) % groups``; each purpose has one stream per group, and
each channel one suppression list per group, which readers (retention, access, the senders'
list) read all of. Each group's tag is chosen so that the groups spread evenly over the 16,384
slots, hence over a cluster's masters (which split the slots evenly), whatever their number.
On a single server the groups cost nothing but a few more keys.

Keys of no subject (API keys, SMS codes, a client address's rate-limit buckets, the
housekeeping state) carry tags of their own; none is touched by a script with other keys,
but for the audience queries' state, kept in the audit log's slot (``audience_key``).
"""

from __future__ import annotations

import functools
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

LAYOUT = "3"  # what this module lays out; a store written by another layout is refused
LAYOUT_KEY = "gw:layout"


def _tag(group: int, groups: int) -> str:
    """The first tag ``g<group>.<n>`` whose slot lies in the group's share of the slots."""
    lo = group * REDIS_CLUSTER_HASH_SLOTS // groups
    hi = (group + 1) * REDIS_CLUSTER_HASH_SLOTS // groups
    n = 0
    while not lo <= key_slot(f"g{group}.{n}".encode()) < hi:
        n += 1
    return "{g" + f"{group}.{n}" + "}"


@functools.cache
def _tags(groups: int) -> tuple[str, ...]:
    """Every group's tag (0.5 s for 1,024 groups, 3 ms for 64: found once per process)."""
    return tuple(_tag(g, groups) for g in range(groups))


class Keys:
    """Key names for one layout of ``groups`` slot groups."""

    def __init__(self, groups: int = 64) -> None:
        if not 1 <= groups <= 1024:
            raise ValueError("SLOT_GROUPS: from 1 to 1024")
        self.groups = groups

    @property
    def layout(self) -> str:
        """What a store written with these keys records (``LAYOUT_KEY``): layout/groups."""
        return f"{LAYOUT}/{self.groups}"

    @property
    def tags(self) -> tuple[str, ...]:
        return _tags(self.groups)

    def tag(self, sid: str) -> str:
        return self.tags[zlib.crc32(sid.encode()) % self.groups]

    # ------------------------------------------------------------------ a subject's own
    def subject(self, sid: str, kind: str) -> str:
        """``consent``, ``ledger``, ``dedup``, ``index``, ``attempts``, ``logins``, ``sms``,
        ``account``."""
        return f"{self.tag(sid)}:s:{sid}:{kind}"

    def consent(self, sid: str) -> str:
        return self.subject(sid, "consent")

    def ledger(self, sid: str) -> str:
        return self.subject(sid, "ledger")

    def dedup(self, sid: str) -> str:
        return self.subject(sid, "dedup")

    def index(self, sid: str) -> str:
        return self.subject(sid, "index")

    def attempts(self, sid: str) -> str:
        return self.subject(sid, "attempts")

    def event_keys(self, sid: str, purposes: tuple[str, ...]) -> list[str]:
        """The keys an event write of ``sid`` touches (lua/events.lua's KEYS): its consent,
        dedup, index and ledger, then each purpose's stream, then its attempts. A fresh list
        each call."""
        return list(self._event_keys(sid, purposes))

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one Keys per storage, kept for its life
    def _event_keys(self, sid: str, purposes: tuple[str, ...]) -> tuple[str, ...]:
        tag = self.tag(sid)
        own = (f"{tag}:s:{sid}:{kind}" for kind in ("consent", "dedup", "index", "ledger"))
        return (*own, *(f"{tag}:ev:{p}" for p in purposes), f"{tag}:s:{sid}:attempts")

    # ------------------------------------------------------------------ shared, per group
    def stream(self, purpose: str, sid: str) -> str:
        """The stream of ``purpose`` that ``sid``'s parts go to: its group's."""
        return f"{self.tag(sid)}:ev:{purpose}"

    def streams(self, purpose: str) -> list[str]:
        """Every stream of ``purpose`` (one per group)."""
        return [f"{tag}:ev:{purpose}" for tag in self.tags]

    def suppression(self, channel: str, sid: str) -> str:
        return f"{self.tag(sid)}:suppress:{channel}"

    def suppressions(self, channel: str) -> list[str]:
        return [f"{tag}:suppress:{channel}" for tag in self.tags]

    def streams_of(self, sid: str) -> str:
        """The name of ``sid``'s group's streams less the purpose (``stream`` is it and a
        purpose), for a script that picks the purpose itself (lua/consent.lua)."""
        return f"{self.tag(sid)}:ev:"

    def purges(self, sid: str) -> str:
        """The pending withdrawal deletions of ``sid``'s group (lua/purge.lua)."""
        return f"{self.tag(sid)}:purges"

    def all_purges(self) -> list[str]:
        """Every group's pending withdrawal deletions."""
        return [f"{tag}:purges" for tag in self.tags]

    # ------------------------------------------------------------------ the audience index
    def group_of(self, ident: str) -> int:
        """The slot group of a subject id or an account's hash (a person's shard)."""
        return zlib.crc32(ident.encode()) % self.groups

    def audience(self, group: int, kind: str) -> str:
        """A shard's ``chg`` (change stream), ``marks`` (withdrawal marks), ``pid`` (person
        numbers), ``next`` (their counter), ``bm`` (bitmaps), ``ver`` (their generations),
        ``gen`` (the shard's generation)."""
        return f"{self.tags[group]}:aud:{kind}"

    def audience_of(self, sid: str, kind: str) -> str:
        return f"{self.tag(sid)}:aud:{kind}"

    def group_stream(self, group: int, purpose: str) -> str:
        return f"{self.tags[group]}:ev:{purpose}"

    # ------------------------------------------------------------------ no subject's
    @staticmethod
    def address(address_key: str, bucket: str) -> str:
        """A client address's rate-limit bucket (its buckets share the address's tag)."""
        return f"rl:{{{address_key}}}:{bucket}"

    @staticmethod
    def apikey(digest: str) -> str:
        return f"apikey:{{keys}}:{digest}"

    APIKEYS = "apikeys:{keys}"  # the set of every key's digest

    @staticmethod
    def login(selector: str) -> str:
        return f"sl:{{{selector}}}"

    @staticmethod
    def account_logins(account_mac: str) -> str:
        return f"acct:{{{account_mac}}}:logins"

    @staticmethod
    def account_subjects(account_mac: str) -> str:
        return f"acct:{{{account_mac}}}:subjects"

    @staticmethod
    def account_traits(account_mac: str) -> str:
        return f"acct:{{{account_mac}}}:traits"

    AUDIENCE_LEASE = "aud:{lease}"
    AUDIENCE_EPOCH = "aud:{lease}:epoch"  # moves on a rebuild: readers load everything again
    AUDIENCE_AUDIT = "aud:{audit}"
    AUDIENCE_BASIS = "aud:{lease}:basis"  # the counted purpose and grant the index used

    @staticmethod
    def audience_key(key_id: str, kind: str) -> str:
        """An API key's ``busy``, ``budget:<month>``, ``answer:<hash>`` and ``recent``, in
        the audit log's slot (``RedisAudienceStore.finish_query`` writes them together)."""
        return f"aud:{{audit}}:k:{key_id}:{kind}"

    # Exports abroad (``exports.py``): one slot for all of them, so that an export's count
    # against its recipient's ceiling and its audit entry are one script; an operator runs a
    # few a day.
    EXPORTS_AUDIT = "exp:{exports}:audit"

    @staticmethod
    def export_people(recipient: str, year: int) -> str:
        """The pseudonyms a recipient received in a calendar year (UTC)."""
        return f"exp:{{exports}}:people:{recipient}:{year}"

    @staticmethod
    def export_staged(export_id: str) -> str:
        """An export's people until it commits (``ExportStore.stage``)."""
        return f"exp:{{exports}}:staged:{export_id}"

    @staticmethod
    def sms_code(code: str) -> str:
        return f"sms:code:{{{code}}}"

    @staticmethod
    def sms_phone(mac: str) -> str:
        return f"sms:phone:{{{mac}}}"
