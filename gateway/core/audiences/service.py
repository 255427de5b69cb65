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

import json
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
    TooCloseToEarlierQuery,
    ValidationFailed,
)
from ..ports import AudienceStore, RecentQuery
from ..records import ApiKeyRecord
from .release import release, release_many
from .view import IndexView

ACTIVE = "active_within_days"
AUDIT_MAX = 8_192  # characters of an audit entry before its contents are shrunk
KEY_BUSY_S = 2.0  # a key's queries run one at a time: how long one waits for the other
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
class KeyState:
    """What the store keeps for an API key and a question: the remembered answer, the key's
    recent released queries, and the budget left this month."""

    answer: dict[str, Any] | None
    recent: list[str]
    left: float


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

    def _refresh(self) -> None:
        self.view.refresh()
        self.on_read(self.view.memory_bytes())

    # ------------------------------------------------------------------ the endpoints
    def estimate(self, key: ApiKeyRecord, body: Mapping[str, Any]) -> dict[str, Any]:
        asked: dict[str, Any] = {"kind": "estimate", "filters": body.get("filters")}
        return self._audited(key, asked, lambda: self._estimate(key, body, asked))

    def breakdown(self, key: ApiKeyRecord, body: Mapping[str, Any]) -> dict[str, Any]:
        asked: dict[str, Any] = {"kind": "breakdown", "by": body.get("by")}
        asked["filters"] = body.get("filters")
        return self._audited(key, asked, lambda: self._breakdown(key, body, asked))

    def _audited(
        self, key: ApiKeyRecord, asked: dict[str, Any], work: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """``work()``'s answer, or its refusal, appended to the audit log either way. A key's
        queries run one at a time, across every worker and gateway: two sent together would
        each pass the difference check before either is recorded."""
        try:
            with self.store.key_lock(_id(key), KEY_BUSY_S):
                answer = work()
        except GatewayError as e:
            self._audit(key, asked, refused=e)
            raise
        self._audit(key, asked, answer=answer)
        return answer

    def _estimate(
        self, key: ApiKeyRecord, body: Mapping[str, Any], asked: dict[str, Any]
    ) -> dict[str, Any]:
        _only(body, ("filters",))
        query = parse_filters(body.get("filters"), self.rules)
        asked["filters"] = query.shown()
        self._refresh()
        people = self.view.matching(query.filters, query.active_within)
        question = f"estimate|{query.canonical()}|{len(people)}"
        state = self._state(key, question)
        answer, left = state.answer, state.left
        if answer is None:
            released = release(len(people), self.settings.epsilon, self.settings.k)
            spent = 0.0
            if not released.below_threshold:
                self._check_difference(state, query, people)
                spent, left = self._spend(key, state, self.settings.epsilon)
            answer = {**released.shown(), "epsilon_spent": spent}
            answer = self._remember(key, question, answer, query, released.below_threshold)
        answer["budget_left"] = left
        return answer

    def _breakdown(
        self, key: ApiKeyRecord, body: Mapping[str, Any], asked: dict[str, Any]
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
        self._refresh()
        base = self.view.matching(query.filters, query.active_within)
        counts = [
            (v, base.intersection_cardinality(self.view.value(by, v))) for v in self.view.values(by)
        ]
        k = self.settings.k
        listed = [(v, n) for v, n in counts if n >= k or self.rules.dimensions[by].trait]
        # remembered by the released cells' true counts only: a suppressed cell's change must
        # not show as a new draw
        released_counts = [(v, n) for v, n in listed if n >= k]
        question = f"breakdown|{by}|{query.canonical()}|{released_counts}"
        state = self._state(key, question)
        answer, left = state.answer, state.left
        if answer is None:
            above = sum(1 for _, n in listed if n >= k)
            spent = 0.0
            if above:
                self._check_difference(state, query, base)
                spent, left = self._spend(key, state, self.settings.breakdown_epsilon)
            released = release_many([n for _, n in listed], self.settings.breakdown_epsilon, k)
            cells = [{"value": v, **r.shown()} for (v, _), r in zip(listed, released, strict=True)]
            answer = {"by": by, "cells": cells, "epsilon_spent": spent}
            answer = self._remember(key, question, answer, query, not above)
        answer["budget_left"] = left
        return answer

    def queries(self, since_ms: int, limit: int = 1000) -> list[dict[str, Any]]:
        """The audit log from ``since_ms`` (oldest first)."""
        out = []
        for text in self.store.audit_since(since_ms, limit):
            try:
                out.append(json.loads(text))
            except ValueError:  # written by hand, or by a broken version: shown as it is
                out.append({"unreadable": text[:1024]})
        return out

    # ------------------------------------------------------------------ guards
    def _month(self) -> str:
        return self.now().strftime("%Y-%m")

    def _state(self, key: ApiKeyRecord, question: str) -> KeyState:
        """What the store keeps for the key, read in one round trip."""
        kept, recent, spent = self.store.key_state(_id(key), self._day(question), self._month())
        answer: dict[str, Any] | None = None
        if kept is not None:
            answer = json.loads(kept)
            answer["epsilon_spent"] = 0.0  # the same answer again costs nothing
        left = round(max(self.settings.monthly_budget - spent, 0.0), 6)
        return KeyState(answer, recent, left)

    def _spend(self, key: ApiKeyRecord, state: KeyState, epsilon: float) -> tuple[float, float]:
        """Spend ``epsilon`` of the key's month: (spent, left), or BudgetExhausted."""
        left = self.store.spend(_id(key), self._month(), epsilon, self.settings.monthly_budget)
        if left is None:
            raise BudgetExhausted(
                "this key's privacy budget for the month is spent; it renews on the 1st (UTC)",
                fields={"epsilon_needed": epsilon, "budget_left": state.left},
                retry_after=_to_next_month(self.now()),
            )
        return epsilon, round(max(left, 0.0), 6)

    def _remember(
        self,
        key: ApiKeyRecord,
        question: str,
        answer: dict[str, Any],
        query: Query,
        below: bool,
    ) -> dict[str, Any]:
        text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        s = self.settings
        recent = None if below else RecentQuery(query.canonical(), s.recent, s.recent_days * DAY_S)
        kept = self.store.remember(_id(key), self._day(question), text, 2 * DAY_S, recent)
        out: dict[str, Any] = json.loads(kept)
        if kept != text:  # a concurrent twin answered first: its answer is the one
            out["epsilon_spent"] = answer["epsilon_spent"]
        return out

    def _day(self, question: str) -> str:
        return self.now().strftime("%Y-%m-%d") + "|" + question

    def _check_difference(self, state: KeyState, query: Query, people: BitMap) -> None:
        """Refuse when the people differ from an earlier query's by 1 to k - 1. The same
        query asked again is not compared with itself: its people may have changed (a
        withdrawal shows), and its answers are bounded by the same-day rule and the budget."""
        k = self.settings.k
        asked = query.canonical()
        for text in state.recent:
            if text == asked:
                continue
            try:
                earlier = Query.parse_canonical(text, self.rules)
            except (ValueError, GatewayError):  # the catalogue changed since: no longer a query
                continue
            before = self.view.matching(
                earlier.filters, earlier.active_within, max_age_s=EARLIER_MAX_AGE_S
            )
            differ = people.symmetric_difference_cardinality(before)
            if 0 < differ < k:
                raise TooCloseToEarlierQuery(
                    f"the people this query matches differ from an earlier query's by fewer "
                    f"than {k}: answering would single them out",
                    fields={"earlier_filters": earlier.shown()},
                )

    def _audit(
        self,
        key: ApiKeyRecord,
        asked: Mapping[str, Any],
        *,
        answer: Mapping[str, Any] | None = None,
        refused: GatewayError | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "at": self.now().isoformat(timespec="milliseconds"),
            "key": key.name,
            "key_digest": key.digest[:12],
            **asked,
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
        self.store.audit(text, self.settings.audit_days * DAY_S * 1000)


def _only(body: Mapping[str, Any], allowed: Sequence[str]) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise ValidationFailed(
            "unknown members", fields={str(name)[:64]: "unknown" for name in extra[:10]}
        )


def _id(key: ApiKeyRecord) -> str:
    return key.digest[:32]


def _to_next_month(now: datetime) -> int:
    nxt = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return max(int((nxt - now).total_seconds()), 1)
