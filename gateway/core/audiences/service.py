"""Marketers' audience queries (clause 3(2) item 1: statistics only, never lists or ids).

Every answer goes through the same guards, in this order: the filters checked against the
catalogue (400 naming what is unknown); the index caught up (withdrawals included); the same
question on the same day answered as before, at no cost (remembered per key, query, day and
true count: asking again gains nothing, and a withdrawal or new data still shows); the floor
(fewer than ``k`` people: no number, no cost); the difference check against the key's recent
queries (two sets of people differing by fewer than ``k`` would single them out); the
month's budget (429 when spent); then OpenDP's noise, two significant digits and an honest
range (``release.py``). Every query, answered or refused, is appended to the audit log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyroaring import BitMap

from ..catalogue import AudienceRules
from ..errors import (
    BudgetExhausted,
    ConfigError,
    GatewayError,
    KeyBusy,
    TooCloseToEarlierQuery,
    ValidationFailed,
)
from ..ports import AudienceStore, QueryEnd, QueryOutcome, QueryState, RecentQuery
from ..records import ApiKeyRecord
from .difference import Earlier, first_too_close
from .release import release, release_many
from .view import IndexView

ACTIVE = "active_within_days"
AUDIT_MAX = 8_192  # characters of an audit entry before its contents are shrunk
KEY_BUSY_S = 2.0  # a key's queries run one at a time: how long one waits for the other
LOCK_MS = 30_000  # a key's query lock lapses by itself after a crash
MAX_VALUES = 50  # values of one dimension in a query
DAY_S = 86_400
MIN_FLOOR = 50  # the floor cannot be set lower (Protected Audience's k)
# An earlier query's people, for the difference check, as computed within this many seconds:
# under a live feed the index moves every second, and recomputing 20 earlier queries at 10 M
# people for each new one would cost far more than the query.
EARLIER_MAX_AGE_S = 300.0


@dataclass(frozen=True)
class Settings:
    """The privacy floor and budget (docs/audiences.md gives the reasoning for each)."""

    k: int = 100
    epsilon: float = 0.5  # per estimate
    breakdown_epsilon: float = 1.0  # per breakdown, split over its released cells
    monthly_budget: float = 10.0  # per API key and calendar month (UTC)
    recent: int = 20  # the key's released queries the difference check compares with
    recent_days: int = 30
    audit_days: int = 366

    def __post_init__(self) -> None:
        if self.k < MIN_FLOOR:
            raise ConfigError(f"AUDIENCE_K={self.k}: it cannot be below {MIN_FLOOR}")
        if not 0 < self.epsilon <= self.monthly_budget:
            raise ConfigError("AUDIENCE_EPSILON: above 0 and within AUDIENCE_MONTHLY_BUDGET")
        if not 0 < self.breakdown_epsilon <= self.monthly_budget:
            raise ConfigError(
                "AUDIENCE_BREAKDOWN_EPSILON: above 0 and within AUDIENCE_MONTHLY_BUDGET"
            )
        if not 1 <= self.recent <= 1000:
            raise ConfigError("AUDIENCE_RECENT: from 1 to 1000")


@dataclass(frozen=True)
class Query:
    """A checked query: filters (dimension, sorted values) and an activity window."""

    filters: tuple[tuple[str, tuple[str, ...]], ...]
    active_within: int | None

    def canonical(self) -> str:
        body: dict[str, Any] = {d: list(v) for d, v in self.filters}
        if self.active_within is not None:
            body[ACTIVE] = self.active_within
        return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    def shown(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.canonical())
        return out

    @staticmethod
    def parse_canonical(text: str, rules: AudienceRules) -> Query:
        return parse_filters(json.loads(text), rules)


def parse_filters(raw: object, rules: AudienceRules) -> Query:
    """``{"<dimension>": [values], "active_within_days": N}`` checked; 400 naming each
    unknown dimension or value."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValidationFailed("filters must be an object", fields={"filters": "not an object"})
    wrong: dict[str, Any] = {}
    filters: list[tuple[str, tuple[str, ...]]] = []
    window: int | None = None
    for name, values in raw.items():
        if name == ACTIVE:
            if values is None:
                continue
            if isinstance(values, bool) or values not in rules.windows:
                wrong[ACTIVE] = f"one of {list(rules.windows)}"
            else:
                window = int(values)
            continue
        dim = rules.dimensions.get(name)
        if dim is None:
            wrong[str(name)[:64]] = "unknown dimension"
            continue
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values or len(values) > MAX_VALUES:
            wrong[name] = f"a list of 1 to {MAX_VALUES} values"
            continue
        kept = {dim.normalise(v) for v in values}
        unknown = [str(v)[:64] for v in values if dim.normalise(v) is None]
        if unknown:
            wrong[name] = {"unknown values": unknown[:10]}
            continue
        filters.append((name, tuple(sorted(v for v in kept if v is not None))))
    if wrong:
        raise ValidationFailed("unknown filters or values", fields=wrong)
    return Query(tuple(sorted(filters)), window)


class Audiences:
    """The query API's logic, over a reader's view of the index and the store."""

    def __init__(
        self,
        store: AudienceStore,
        view: IndexView,
        rules: AudienceRules,
        settings: Settings,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_read: Callable[[int], None] = lambda memory: None,
    ) -> None:
        self.store = store
        self.view = view
        self.rules = rules
        self.settings = settings
        self.now = now
        self.on_read = on_read
        self._queries: dict[str, Query | None] = {}  # see _parsed

    def _refresh(self, turn: _Turn, state: QueryState) -> None:
        self.view.refresh(state.index, turn.ticket)
        self.on_read(self.view.memory_bytes())

    # ------------------------------------------------------------------ the endpoints
    def estimate(self, key: ApiKeyRecord, body: Mapping[str, Any]) -> dict[str, Any]:
        asked: dict[str, Any] = {"kind": "estimate", "filters": body.get("filters")}
        return self._audited(key, asked, lambda turn: self._estimate(turn, body, asked))

    def breakdown(self, key: ApiKeyRecord, body: Mapping[str, Any]) -> dict[str, Any]:
        asked: dict[str, Any] = {"kind": "breakdown", "by": body.get("by")}
        asked["filters"] = body.get("filters")
        return self._audited(key, asked, lambda turn: self._breakdown(turn, body, asked))

    def _audited(
        self,
        key: ApiKeyRecord,
        asked: dict[str, Any],
        work: Callable[[_Turn], dict[str, Any]],
    ) -> dict[str, Any]:
        """``work()``'s answer, or its refusal, appended to the audit log either way (the
        answer's entry by the same script that keeps the answer: ``_Turn.answered``)."""
        turn = _Turn(self, key, asked)
        try:
            return work(turn)
        except GatewayError as e:
            turn.refused(e)
            raise
        except BaseException:
            turn.abandon()
            raise

    def _estimate(
        self, turn: _Turn, body: Mapping[str, Any], asked: dict[str, Any]
    ) -> dict[str, Any]:
        _only(body, ("filters",))
        query = parse_filters(body.get("filters"), self.rules)
        asked["filters"] = query.shown()
        state = turn.begin(f"estimate|{query.canonical()}")
        self._refresh(turn, state)
        people = self.view.matching(query.filters, query.active_within)
        counts = str(len(people))
        if counts in state.answers:
            return turn.again(state, counts)
        eps = self.settings.epsilon
        below = len(people) < self.settings.k
        if not below:
            self._check_difference(state, query, people)
            turn.afford(state, eps)
        answer = {**release(len(people), eps, self.settings.k).shown(), "epsilon_spent": 0.0}
        recent = None if below else RecentQuery(query.canonical(), len(people))
        return turn.answered(answer, counts, recent, 0.0 if below else eps)

    def _breakdown(
        self, turn: _Turn, body: Mapping[str, Any], asked: dict[str, Any]
    ) -> dict[str, Any]:
        _only(body, ("by", "filters"))
        by = body.get("by")
        if not isinstance(by, str) or by not in self.rules.dimensions:
            raise ValidationFailed(
                "by: one of the dimensions",
                fields={"by": f"one of {sorted(self.rules.dimensions)}"},
            )
        query = parse_filters(body.get("filters"), self.rules)
        asked["filters"] = query.shown()
        state = turn.begin(f"breakdown|{by}|{query.canonical()}")
        self._refresh(turn, state)
        base = self.view.matching(query.filters, query.active_within)
        counts = [
            (v, base.intersection_cardinality(self.view.value(by, v))) for v in self.view.values(by)
        ]
        k = self.settings.k
        listed = [(v, n) for v, n in counts if n >= k or self.rules.dimensions[by].trait]
        # remembered by the released cells' true counts only: a suppressed cell's change must
        # not show as a new draw
        released_counts = [(v, n) for v, n in listed if n >= k]
        kept = hashlib.sha256(repr(released_counts).encode()).hexdigest()[:32]
        if kept in state.answers:
            return turn.again(state, kept)
        eps = self.settings.breakdown_epsilon
        if released_counts:
            self._check_difference(state, query, base)
            turn.afford(state, eps)
        released = release_many([n for _, n in listed], eps, k)
        cells = [{"value": v, **r.shown()} for (v, _), r in zip(listed, released, strict=True)]
        answer = {"by": by, "cells": cells, "epsilon_spent": 0.0}
        spent = eps if released_counts else 0.0
        recent = RecentQuery(query.canonical(), len(base)) if released_counts else None
        return turn.answered(answer, kept, recent, spent)

    def queries(self, since_ms: int, limit: int = 1000) -> list[dict[str, Any]]:
        """The audit log from ``since_ms`` (oldest first)."""
        out = []
        for text in self.store.audit_since(since_ms, limit):
            try:
                out.append(json.loads(text))
            except ValueError:  # written by hand, or by a broken version: shown as it is
                out.append({"unreadable": text[:1024]})
        return out

    def account(self, key: ApiKeyRecord) -> dict[str, Any]:
        """What a key may see of itself (the marketers' dashboard): this month's budget and
        what is left of it, and its own latest queries, newest first: the audit log's entries
        of this key, which the script that appends them keeps in a list of the key's own as
        well (20; one read, whatever the other keys ask). The recent list the difference check
        keeps is not shown: it holds true counts."""
        month = self.now().strftime("%Y-%m")
        spent = self.store.spent(_id(key), month)
        own = []
        for text in self.store.own_latest(_id(key)):
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if isinstance(entry, dict):
                own.append({k: v for k, v in entry.items() if k not in ("key", "key_digest")})
        return {
            "key": {"name": key.name},
            "month": month,
            "budget": self.settings.monthly_budget,
            "budget_left": _left(self.settings, spent),
            "recent": own,
        }

    # ------------------------------------------------------------------ guards
    def _parsed(self, text: str) -> Query | None:
        """A recent query read back (kept parsed: 20 of them for every query), or None when
        the catalogue no longer knows it."""
        if text in self._queries:
            return self._queries[text]
        found: Query | None
        try:
            found = Query.parse_canonical(text, self.rules)
        except (ValueError, GatewayError):
            found = None
        if len(self._queries) >= 4096:
            self._queries.clear()
        self._queries[text] = found
        return found

    def _check_difference(self, state: QueryState, query: Query, people: BitMap) -> None:
        """Refuse when the people differ from an earlier query's by 1 to k - 1
        (``difference.py``). The same query asked again is not compared with itself: its
        people may have changed (a withdrawal shows), and its answers are bounded by the
        same-day rule and the budget."""
        asked = query.canonical()
        earlier = [
            (q, r.count)
            for r in state.recent
            if r.query != asked and (q := self._parsed(r.query)) is not None
        ]  # a query no longer parsed: the catalogue changed since, no longer a query
        k = self.settings.k
        them = [Earlier(q.filters, q.active_within, count) for q, count in earlier]
        close = first_too_close(self.view, people, them, k, EARLIER_MAX_AGE_S)
        if close is not None:
            raise TooCloseToEarlierQuery(
                f"the people this query matches differ from an earlier query's by fewer "
                f"than {k}: answering would single them out",
                fields={"earlier_filters": earlier[close][0].shown()},
            )


class _Turn:
    """One query of one API key, from its lock to its audit entry, in two round trips.

    ``begin`` takes the key's lock and reads its state in one script: a key's queries run one
    at a time across every worker and gateway, else two sent together would each pass the
    difference check before either is recorded. ``answered`` (and ``refused``) end it in
    one more: the budget spent, the answer kept for the day, the query added to the recent
    ones, the audit entry appended, the lock released, all or nothing. Eight round trips
    before (lock, state, spend, remember, audit, release) cost 40 % of an estimate's time."""

    def __init__(self, service: Audiences, key: ApiKeyRecord, asked: dict[str, Any]) -> None:
        self.service = service
        self.key = key
        self.id = _id(key)
        self.asked = asked
        self.token = ""  # the lock's, once held
        self.ticket = 0  # the view's, for the index read with the lock (begin)
        self.question = ""
        self.month = service.now().strftime("%Y-%m")
        self.ended = False

    def begin(self, question: str) -> QueryState:
        """The key's lock taken (waiting up to ``KEY_BUSY_S``), and what the query needs, in
        one round trip: the answers given to ``question`` today, the recent queries, the ε
        spent, and the index's generations and withdrawal marks."""
        self.question = self._day(question)
        token = uuid.uuid4().hex
        ends = time.monotonic() + KEY_BUSY_S
        first = True
        while True:
            # numbered before the index is read: a refresh reading after a later one must
            # not put back a withdrawal that one saw (IndexView.refresh)
            self.ticket = self.service.view.ticket()
            self.token = token  # released on any failure: the script may have run
            state = self.service.store.begin_query(
                self.id, self.question, self.month, token, LOCK_MS, index=first
            )  # a wait's tries read the lock alone: the index is read once it is held
            if state is not None:
                return state
            self.token, first = "", False
            if time.monotonic() > ends:
                raise KeyBusy("another query of this key is being answered; retry", retry_after=1)
            time.sleep(0.005)

    def _day(self, question: str) -> str:
        return self.service.now().strftime("%Y-%m-%d") + "|" + question

    def left(self, spent: float) -> float:
        return _left(self.service.settings, spent)

    def afford(self, state: QueryState, epsilon: float) -> None:
        """BudgetExhausted unless the month's budget has ``epsilon`` left (checked again,
        atomically, when it is spent)."""
        if state.spent + epsilon > self.service.settings.monthly_budget + 1e-9:
            self._exhausted(epsilon, self.left(state.spent))

    def _exhausted(self, epsilon: float, left: float) -> None:
        raise BudgetExhausted(
            "this key's privacy budget for the month is spent; it renews on the 1st (UTC)",
            fields={"epsilon_needed": epsilon, "budget_left": left},
            retry_after=_to_next_month(self.service.now()),
        )

    def again(self, state: QueryState, counts: str) -> dict[str, Any]:
        """The answer given to the same question for the same true counts today, again, at
        no cost."""
        answer: dict[str, Any] = json.loads(state.answers[counts])
        answer["epsilon_spent"] = 0.0
        self._end(audit=self._entry(answer=answer))
        answer["budget_left"] = self.left(state.spent)
        return answer

    def answered(
        self, answer: dict[str, Any], counts: str, recent: RecentQuery | None, epsilon: float
    ) -> dict[str, Any]:
        """Spend ``epsilon``, keep ``answer`` for the day (for the true ``counts``), remember
        ``recent`` for the difference check, audit: in one step. The answer as given (with
        ``budget_left``)."""
        answer["epsilon_spent"] = epsilon
        s = self.service.settings
        text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        end = self._end(
            epsilon=epsilon,
            answer=text,
            counts=counts,
            recent=None
            if recent is None
            else RecentQuery(recent.query, recent.count, s.recent, s.recent_days * DAY_S),
            audit=self._entry(answer=answer),
        )
        if end.outcome == "budget":  # only when the lock lapsed and another query spent
            self.ended = False  # the script wrote nothing: the refusal is audited on its own
            self._exhausted(epsilon, self.left(end.spent))
        if end.outcome == "twin":  # likewise: the earlier answer is the one
            assert end.answer is not None
            answer = json.loads(end.answer)
            answer["epsilon_spent"] = 0.0
            self._end(audit=self._entry(answer=answer))
        answer["budget_left"] = self.left(end.spent)
        return answer

    def refused(self, error: GatewayError) -> None:
        """The refusal audited, and the lock released if held."""
        if not self.ended:
            self._end(audit=self._entry(refused=error))

    def abandon(self) -> None:
        """The lock released after an unexpected failure, if the store still answers."""
        if self.token and not self.ended:
            with contextlib.suppress(Exception):
                self._end()

    def _end(self, **end: Any) -> QueryOutcome:
        s = self.service.settings
        outcome = self.service.store.finish_query(
            self.id,
            QueryEnd(
                question=self.question,
                month=self.month,
                token=self.token,
                budget=s.monthly_budget,
                answer_ttl_s=2 * DAY_S,
                audit_keep_ms=s.audit_days * DAY_S * 1000,
                **end,
            ),
        )
        self.token = ""
        self.ended = True
        return outcome

    def _entry(
        self,
        *,
        answer: Mapping[str, Any] | None = None,
        refused: GatewayError | None = None,
    ) -> str:
        """The audit entry: who asked what, when, and the answer or the refusal (whole JSON,
        at most ``AUDIT_MAX`` characters: what it holds is shrunk, never cut)."""
        entry: dict[str, Any] = {
            "at": self.service.now().isoformat(timespec="milliseconds"),
            "key": self.key.name,
            "key_digest": self.key.digest[:12],
            **self.asked,
        }
        if refused is not None:
            entry["outcome"] = refused.code
            entry["epsilon_spent"] = 0.0
        else:
            assert answer is not None
            entry["outcome"] = "answered"
            entry["answer"] = {k: v for k, v in answer.items() if k not in ("budget_left",)}
            entry["epsilon_spent"] = answer.get("epsilon_spent", 0.0)
        text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
        if len(text) > AUDIT_MAX:  # never cut the JSON itself: shrink what it holds
            for name in ("filters", "by"):
                raw = json.dumps(entry.get(name), ensure_ascii=False, default=str)
                if len(raw) > 1024:
                    entry[name] = {"truncated": raw[:1024]}
            cells = entry.get("answer", {}).get("cells")
            if cells:  # value: estimate, compactly
                entry["answer"]["cells"] = {c["value"]: c["estimate"] for c in cells}
            text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
        return text


def _only(body: Mapping[str, Any], allowed: Sequence[str]) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise ValidationFailed(
            "unknown members", fields={str(name)[:64]: "unknown" for name in extra[:10]}
        )


def _left(settings: Settings, spent: float) -> float:
    return round(max(settings.monthly_budget - spent, 0.0), 6)


def _id(key: ApiKeyRecord) -> str:
    return key.digest[:32]


def _to_next_month(now: datetime) -> int:
    nxt = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return max(int((nxt - now).total_seconds()), 1)
