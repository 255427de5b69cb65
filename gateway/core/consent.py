"""Consent: the rules that turn a subject's recorded state into what counts today, and the
recording of every choice on the ledger.

Deny by default: a purpose counts only when granted under a policy version at least as new
as the purpose's last change (clauses 2(6) and 9). ``necessary`` is always on. Withdrawing is
one call, as giving is, and is never refused by a rate limit.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .caller import Caller
from .catalogue import NECESSARY, Catalogue
from .errors import LedgerBusy, LedgerConflict, NotDurable, StorageUnavailable
from .ledger import build_entry
from .records import ConsentChange, ConsentRecord
from .service import Gateway
from .tokens import Tokens

WRITE_ATTEMPTS = 5
HINT_CHARS = 16  # of the ledger head, in the _consent cookie: 64 bits tell states apart


@dataclass(frozen=True, slots=True)
class ConsentState:
    recorded: bool
    policy_version: str | None
    purposes: dict[str, dict[str, Any]]
    needs_reconsent: list[str]
    granted: frozenset[str]  # what counts today, necessary included
    head: str = ""  # the ledger head this state was read at
    channels: dict[str, dict[str, Any]] | None = None  # advertising's channels

    def to_json(self, cat: Catalogue) -> dict[str, Any]:
        return {
            "policy_version": self.policy_version,
            "current_version": cat.current.version,
            "recorded": self.recorded,
            "purposes": self.purposes,
            "needs_reconsent": self.needs_reconsent,
            "channels": self.channels or {},
        }


def granted_now(
    cat: Catalogue, record: ConsentRecord, min_grant: Mapping[str, int]
) -> frozenset[str]:
    """The optional purposes that count today; the hot path's cut of ``evaluate``."""
    levels = record.levels
    return frozenset(p for p in cat.optional_purposes if levels.get(p, 0) >= min_grant[p])


def evaluate(cat: Catalogue, record: ConsentRecord) -> ConsentState:
    last_version = record.version
    last_idx = cat.version_index(last_version) if last_version else None
    purposes: dict[str, dict[str, Any]] = {
        NECESSARY: {"granted": True, "version": last_version, "at": record.updated}
    }
    needs: list[str] = []
    granted = {NECESSARY}
    for p in cat.optional_purposes:
        changed = cat.last_change[p]
        effective = record.levels.get(p, 0) >= changed + 1
        version = record.versions.get(p)
        decided_idx = cat.version_index(version) if version else last_idx
        stale = record.recorded and decided_idx is not None and decided_idx < changed
        purposes[p] = {
            "granted": effective,
            "version": version,
            "at": record.times.get(p),
            "decided": version is not None,
        }
        if stale:
            purposes[p]["stale"] = True
            needs.append(p)
        if effective:
            granted.add(p)
    advertising = cat.advertising
    channels = {
        ch: {
            "unsubscribed": ch in record.left,
            "at": record.left.get(ch),
            "may_contact": advertising in granted and ch not in record.left,
        }
        for ch in cat.channels
    }
    return ConsentState(
        record.recorded,
        last_version,
        purposes,
        needs,
        frozenset(granted),
        record.head,
        channels,
    )


@dataclass(frozen=True, slots=True)
class Recorded:
    """A ledger entry written: the state after it, its receipt, and per purpose it withdrew
    the stream entries of the subject's event parts deleted with it."""

    state: ConsentState
    receipt: dict[str, Any]
    deleted: dict[str, int]


def consent_hint(gw: Gateway, granted: Iterable[str], head: str) -> str:
    """The signed ``_consent`` cookie (``X-Consent`` for the APP): a hint of the state."""
    return gw.tokens.sign_consent(gw.catalogue.current.version, sorted(granted), head[:HINT_CHARS])


def now_text() -> str:
    """Now, as the ledger and the consent state write times."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def record(
    gw: Gateway,
    who: Caller,
    decisions: Mapping[str, bool],
    version: str,
    source: str,
    action: str,
    *,
    leaves: tuple[str, ...] = (),
    decides: bool = True,
    client_address: str | None = None,
) -> Recorded:
    """Append one ledger entry and apply it to the state; the new state, the receipt, and
    what the withdrawal deleted.

    A purpose refused here that the subject had granted (under any version) takes the
    subject's stored event parts of that purpose with it, in the same atomic step as the
    entry (PIPL art. 47: a withdrawal of consent deletes what was kept under it). The ledger
    stays: it is the proof of the choices.

    ``leaves``: advertising channels left in the same atomic step (an unsubscribe).
    ``decides``: False for an entry that decides no purpose (an unsubscribe), which must not
    make the subject look as if it had answered the banner. ``client_address``: given for the
    consent API's own calls, which the rate limits cover (the subject's ledger bucket; the
    address's ledger bucket, and its new-subjects bucket for a first entry) unless the write
    withdraws something granted. Links, GPC and opt-outs are not limited: each changes a
    state once."""
    cat = gw.catalogue
    sid = who.ensure()
    vidx = cat.version_index(version)
    assert vidx is not None  # the schema admits known versions only
    decisions = {NECESSARY: True, **{p: g for p, g in decisions.items() if p != NECESSARY}}
    receipt_id = secrets.token_hex(16)
    paid = client_address is None  # the address's buckets, taken once
    advertising = cat.advertising
    for _ in range(WRITE_ATTEMPTS):
        current = gw.store.read_consent(sid)
        # Withdrawing must stay as easy as granting: a write that takes back something
        # granted (under any version: its data is held) is never refused by a limit (nor are
        # links, GPC and opt-outs: no address).
        narrows = any(current.levels.get(p, 0) > 0 for p, g in decisions.items() if g is False)
        limited = client_address is not None and not narrows
        if limited and not paid:
            gw.store.take_address(gw.addresses(client_address), new_subject=not current.exists)
            paid = True
        # Refusing advertising puts the subject on every channel's suppression list (senders
        # that hold addresses from elsewhere learn of refusals made at the first consent
        # too); granting it takes them off the lists of the channels they did not leave.
        refused = advertising is not None and decisions.get(advertising) is False
        channels = sorted(set(leaves) | (set(cat.channels) if refused else set()))
        rejoined = [
            ch
            for ch in cat.channels
            if advertising is not None
            and decisions.get(advertising) is True
            and ch not in channels
            and ch not in current.left
        ]
        when = now_text()
        entry = build_entry(
            seq=current.length + 1,
            receipt_id=receipt_id,
            subject=sid,
            time=when,
            policy_version=version,
            purposes=decisions,
            source=source,
            action=action,
            prev=current.head,
        )
        signed = {**entry, "sig": gw.receipts.sign(entry)}
        levels = {p: (vidx + 1 if g else 0) for p, g in decisions.items() if p != NECESSARY}
        change = ConsentChange(when, version, levels, decides, tuple(leaves))
        grants = any(levels.get(p, current.levels.get(p, 0)) > 0 for p in cat.optional_purposes)
        counted = cat.audiences.consent if cat.audiences else None
        audience = "" if counted not in decisions else "in" if decisions[counted] else "out"
        purge = [p for p, g in decisions.items() if g is False and current.levels.get(p, 0) > 0]
        try:
            appended = gw.store.append_consent(
                sid,
                expected_head=current.head,
                receipt_id=receipt_id,
                entry=signed,
                change=change,
                grants=grants,
                limited=limited,
                suppress=channels,
                unsuppress=rejoined,
                audience=audience,
                purge=purge,
            )
        except LedgerConflict:
            continue
        except NotDurable as e:
            raise StorageUnavailable(str(e)) from e
        break
    else:
        raise LedgerBusy("the ledger is busy with concurrent changes; nothing was recorded, retry")
    gw.metrics.consents.labels(action=action).inc()
    if cat.saved_login is not None and decisions.get(cat.saved_login) is False:
        gw.logins.revoke_subject(sid)  # withdrawn: every saved login ends now
    state = evaluate(cat, gw.store.read_consent(sid))
    return Recorded(state, gw.receipts.issue(signed), dict(appended.deleted))


def standing_refusal(tokens: Tokens, gpc_header: str | None, optout: str | None) -> str | None:
    """What refuses advertising on every request, whatever the ledger says: ``"gpc"`` for
    ``Sec-GPC: 1``, ``"optout"`` for a genuine ``_optout`` cookie, else None."""
    if (gpc_header or "").strip() == "1":
        return "gpc"
    return "optout" if tokens.verify_optout(optout) else None


def honour_refusal(
    gw: Gateway, who: Caller, current: ConsentRecord, source: str
) -> Recorded | None:
    """Withdraw advertising once, on the ledger with ``source`` (``gpc``, ``optout``...), if
    it is granted.

    Called for requests that carry a standing refusal; what was recorded (and deleted) when an
    entry was written, else None. The entry keeps the version the subject last decided under,
    so no other purpose changes.
    """
    advertising = gw.catalogue.advertising
    if who.sid is None or advertising is None or current.levels.get(advertising, 0) == 0:
        return None
    version = current.version or gw.catalogue.current.version
    return record(gw, who, {advertising: False}, version, source, "withdraw")


def leave_channel(gw: Gateway, who: Caller, channel: str, source: str) -> bool:
    """Unsubscribe the subject from advertising on one channel; False when already done.

    The ledger entry (action ``unsubscribe``, source the link or message it came from)
    changes no purpose: the person keeps advertising on other channels."""
    current = gw.store.read_consent(who.ensure())
    if channel in current.left:
        return False
    version = current.version or gw.catalogue.current.version
    record(
        gw,
        who,
        {},
        version,
        source,
        f"unsubscribe:{channel}",
        leaves=(channel,),
        decides=False,
    )
    return True
