"""One subject as a whole: erasing it, and what else is held about it (suppression lists,
remembered event ids); the senders' suppression lists across every slot group."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from ..core.records import Erased, Suppressed
from .client import Client, translating
from .keys import Keys


class SubjectStorage:
    """The per-subject half of ``RedisStorage`` (a mixin)."""

    r: Client
    keys: Keys
    _erase_script: Any
    logins: Any
    codes: Any
    accounts: Any
    compactor: Any

    @translating
    def erase_subject(self, sid: str) -> Erased:
        """Delete everything stored about ``sid``: its saved logins, SMS keys and link to an
        account (the account's traits too when no other subject is linked), then in one
        atomic step (``lua/erase.lua``) its event parts (found by its index), consent state,
        ledger, dedup ids and index. Its places on the suppression lists stay, so that it is
        never contacted again. An erasure that removed something asks the store to rewrite
        its files (``compaction``), which a repeated one does not."""
        logins = self.logins.revoke(self.logins.of_subject(sid))
        codes = self.codes.erase_subject(sid)
        account = self.accounts.account_of(sid)
        unlinked, traits = self.accounts.leave(account, sid) if account else (False, False)
        k = self.keys
        keys = [k.consent(sid), k.ledger(sid), k.dedup(sid), k.index(sid)]
        keys += [k.subject(sid, "logins"), k.subject(sid, "sms"), k.subject(sid, "account")]
        keys += [k.audience_of(sid, "chg"), k.audience_of(sid, "marks"), k.audience_of(sid, "pid")]
        keys += [k.purges(sid), k.attempts(sid)]
        entries, removed, state, ledger, ids, person = self._erase_script(
            keys=keys, args=[sid, account or ""]
        )
        erased = Erased(
            int(entries),
            int(removed) + codes + int(unlinked),
            logins,
            consent_state=bool(state),
            ledger_entries=int(ledger),
            event_ids=int(ids),
            sms_codes=codes,
            account_link=unlinked,
            account_traits=traits,
            audience_person=bool(person),
        )
        if erased.anything:
            # after the erasure: the AOF rewrite that claims it forks after it
            self.compactor.record_erasure()
        return erased

    @translating
    def suppressed_since(self, channel: str, since_ms: int, limit: int) -> list[Suppressed]:
        """Subjects who left ``channel`` (or all advertising) at ``since_ms`` or later, oldest
        first (by time, then id), across every slot group's list.

        Each group's list is read a chunk at a time (about twice its share of ``limit``),
        and only a group whose chunk ended before the page's last row is read further: a
        page costs about ``2 * limit`` entries whatever the number of groups, where reading
        ``limit`` from each of 64 groups cost 64 times that."""
        if limit <= 0:
            return []
        keys = self.keys.suppressions(channel)
        chunk = max(8, -(-2 * limit // len(keys)))
        found: list[list[tuple[int, str]]] = [[] for _ in keys]
        wanted = list(range(len(keys)))
        while wanted:
            pipe = self.r.pipeline(transaction=False)
            for g in wanted:
                pipe.zrangebyscore(
                    keys[g], since_ms, "+inf", start=len(found[g]), num=chunk, withscores=True
                )
            full = []
            for g, rows in zip(wanted, pipe.execute(), strict=True):
                found[g] += [(int(score), str(sid)) for sid, score in rows]
                if len(rows) == chunk:
                    full.append(g)
            page = list(heapq.merge(*found))[:limit]
            last = page[-1] if len(page) == limit else None
            # a group cut short may hold rows that belong on the page: read on there
            wanted = [g for g in full if last is None or found[g][-1] <= last]
            chunk *= 2
        return [Suppressed(sid, ms) for ms, sid in page]

    @translating
    def suppressions_of(self, sid: str, channels: Sequence[str]) -> dict[str, int | None]:
        """Per channel, when the subject joined its suppression list (ms), or None."""
        pipe = self.r.pipeline(transaction=False)
        for channel in channels:
            pipe.zscore(self.keys.suppression(channel, sid), sid)
        return {
            ch: None if at is None else int(at)
            for ch, at in zip(channels, pipe.execute(), strict=True)
        }

    @translating
    def dedup_count(self, sid: str) -> int:
        """How many event ids are remembered for the subject (to spot a resent event)."""
        return int(self.r.zcard(self.keys.dedup(sid)))
