"""Marketers' audience counts end to end on the real stores: people with consent counted by
dimension, the floor, withdrawals and erasures out before the next query, people not devices,
difference checks, budget, same-day answers, the audit, and never an identifier."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.core.ports import QueryEnd, RecentQuery

from ..conftest import make_config
from ..helpers import app_subject, event

pytestmark = pytest.mark.stores

K = 50  # the lowest floor the setting takes: the smallest populations that show it


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    """A gateway whose indexer runs when a test says (``index(app)``), not on a thread."""
    application = create_app(
        make_config(redis_url, tmp_path, AUDIENCE_INDEXER=False, RATE_LIMITS=False, AUDIENCE_K=K)
    )
    yield application
    for close in application.extensions["gateway"].closers:
        close()


def svc(app: Flask) -> Any:
    return app.extensions["gateway"]


def index(app: Flask) -> None:
    svc(app).indexer.run_until_idle()


def keys(app: Flask) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Headers of an ``audiences`` key, an ``audiences_admin`` key and an ``accounts`` key."""
    made = svc(app).apikeys
    return tuple(  # type: ignore[return-value]
        {"Authorization": "Bearer " + made.create(name, [scope])}
        for name, scope in (
            ("marketing team", "audiences"),
            ("privacy office", "audiences_admin"),
            ("platform backend", "accounts"),
        )
    )


def people(
    client: FlaskClient, n: int, *, advertising: bool = True, **fields: Any
) -> list[tuple[str, str]]:
    """``n`` APP subjects with personalization granted (and advertising as said), each having
    sent a search with ``fields``; made 16 at a time (each consent waits for the store's
    fsync: one by one they took most of this module's time)."""

    def one(_: int) -> tuple[str, str]:
        c = client.application.test_client()
        c.environ_base.update(client.environ_base)  # the same client address
        sid, token = app_subject(c, personalization=True, advertising=advertising)
        body = {"events": [event("search", keyword="螺丝", **fields)]}
        resp = c.post("/v1/batch", json=body, headers={"X-Subject": token})
        assert resp.status_code == 202 and resp.get_json()["stored"] == 1, resp.get_json()
        return sid, token

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


def estimate(client: FlaskClient, auth: dict[str, str], **filters: Any) -> Any:
    return client.post("/v1/audiences/estimate", json={"filters": filters}, headers=auth)


def true_count(app: Flask, **filters: Any) -> int:
    from gateway.core.audiences.service import parse_filters

    query = parse_filters(filters, svc(app).catalogue.audiences)
    view = svc(app).audiences.view
    view.refresh()
    return len(view.matching(query.filters, query.active_within))


def test_consented_people_are_counted_with_noise_rounding_and_an_honest_range(
    app: Flask, client: FlaskClient
) -> None:
    auth, _, _ = keys(app)
    ids = people(client, 65, category="BOLT")
    ids += people(client, 15, advertising=False, category="BOLT")  # never counted
    index(app)
    assert true_count(app, category=["BOLT"]) == 65
    assert true_count(app, category=["BOLT"], active_within_days=7) == 65
    resp = estimate(client, auth, category=["BOLT"], active_within_days=7)
    assert resp.status_code == 200, resp.get_json()
    got = resp.get_json()
    assert set(got) == {"estimate", "range", "below_threshold", "epsilon_spent", "budget_left"}
    assert got["below_threshold"] is False and got["estimate"] >= K
    assert len(str(got["estimate"]).rstrip("0")) <= 2  # two significant digits
    lo, hi = got["range"]  # holds the true count 95 % of the time (test_audience_release.py)
    assert K <= lo <= got["estimate"] <= hi and hi - lo < 100
    assert got["epsilon_spent"] == 0.5 and got["budget_left"] == 9.5
    text = resp.get_data(as_text=True)
    for sid, token in ids:  # no identifier in any answer
        assert sid not in text and token not in text


def test_fewer_than_k_people_get_no_number_and_cost_nothing(
    app: Flask, client: FlaskClient
) -> None:
    auth, _, _ = keys(app)
    people(client, 6, category="RARE")
    index(app)
    got = estimate(client, auth, category=["RARE"]).get_json()
    assert got == {
        "estimate": None,
        "range": None,
        "below_threshold": True,
        "epsilon_spent": 0.0,
        "budget_left": 10.0,
    }


def test_a_withdrawal_or_an_erasure_drops_the_person_from_the_very_next_query(
    app: Flask, client: FlaskClient
) -> None:
    auth, _, _ = keys(app)
    ids = people(client, K + 1, category="EDGE")
    index(app)
    assert estimate(client, auth, category=["EDGE"]).get_json()["below_threshold"] is False
    # withdrawn on the APP: the indexer has not run since, and the next query knows
    resp = client.delete("/v1/consent", headers={"X-Subject": ids[0][1]})
    assert resp.status_code == 200, resp.get_json()
    assert true_count(app, category=["EDGE"]) == K
    resp = client.delete(f"/v1/subjects/{ids[1][0]}", headers=_erasure_key(app))
    assert resp.status_code == 200, resp.get_json()
    assert true_count(app, category=["EDGE"]) == K - 1
    got = estimate(client, auth, category=["EDGE"]).get_json()
    assert got["below_threshold"] is True and got["estimate"] is None
    index(app)  # folded into the saved bitmaps: still out, and the marks are gone
    assert true_count(app, category=["EDGE"]) == K - 1
    assert svc(app).store.audiences.generations()[1] == []


def _erasure_key(app: Flask) -> dict[str, str]:
    return {"Authorization": "Bearer " + svc(app).apikeys.create("dpo", ["erasure"])}


def test_subjects_of_one_account_count_once_and_its_latest_decision_wins(
    app: Flask, client: FlaskClient
) -> None:
    _, _, accounts = keys(app)
    pairs = []
    for i in range(3):
        account = f"buyer-{i}"
        devices = people(client, 2, category="PAIR")
        for sid, _ in devices:
            resp = client.post(
                f"/v1/accounts/{account}/subjects", json={"subject": sid}, headers=accounts
            )
            assert resp.status_code == 200
        traits = {"industry": "machinery", "company_size": "20-99", "province": "浙江"}
        resp = client.put(f"/v1/accounts/{account}/traits", json=traits, headers=accounts)
        assert resp.status_code == 200
        pairs.append(devices)
    index(app)
    assert true_count(app, category=["PAIR"]) == 3  # 6 devices, 3 people
    assert true_count(app, industry=["machinery"], province=["浙江省"]) == 3
    # the second device withdraws: the account is out (before any indexing)
    client.delete("/v1/consent", headers={"X-Subject": pairs[0][1][1]})
    assert true_count(app, category=["PAIR"]) == 2
    index(app)
    assert true_count(app, category=["PAIR"]) == 2
    # the first device grants again later: the latest decision wins
    resp = client.post(
        "/v1/consent",
        json={"policy_version": _current(app), "purposes": {"advertising": True}},
        headers={"X-Subject": pairs[0][0][1]},
    )
    assert resp.status_code == 201
    index(app)
    # counted again, but not in PAIR: the withdrawal deleted the second device's events, and
    # the index forgot what it had derived from the account's events (it undercounts, never
    # overcounts), until the account's devices send again
    assert true_count(app) == 3 and true_count(app, category=["PAIR"]) == 2
    c = client.application.test_client()
    again = {"events": [event("search", keyword="螺丝", category="PAIR")]}
    resp = c.post("/v1/batch", json=again, headers={"X-Subject": pairs[0][0][1]})
    assert resp.get_json()["stored"] == 1
    index(app)
    assert true_count(app, category=["PAIR"]) == 3
    # traits changed: the old value no longer matches, the new one does
    resp = client.put("/v1/accounts/buyer-1/traits", json={"industry": "rail"}, headers=accounts)
    assert resp.status_code == 200
    index(app)
    assert true_count(app, industry=["machinery"]) == 2
    assert true_count(app, industry=["rail"]) == 1
    svc(app).indexer.rebuild()  # a linked subject counts as its account, not also as itself
    assert true_count(app, category=["PAIR"]) == 3
    assert true_count(app) == 3


def _current(app: Flask) -> str:
    return str(svc(app).catalogue.current.version)


def test_a_query_narrowed_by_one_person_is_refused(app: Flask, client: FlaskClient) -> None:
    auth, admin, accounts = keys(app)
    ids = people(client, 60, category="DIFF")
    (odd_sid, _) = ids[0]
    for i, (sid, _) in enumerate(ids):
        client.post(f"/v1/accounts/acct-{i}/subjects", json={"subject": sid}, headers=accounts)
        size = "1-19" if sid == odd_sid else "20-99"
        client.put(f"/v1/accounts/acct-{i}/traits", json={"company_size": size}, headers=accounts)
    index(app)
    assert estimate(client, auth, category=["DIFF"]).status_code == 200
    resp = estimate(client, auth, category=["DIFF"], company_size=["20-99"])
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "too_close_to_earlier_query"
    log = client.get("/v1/audiences/queries", headers=admin).get_json()["queries"]
    assert [q["outcome"] for q in log] == ["answered", "too_close_to_earlier_query"]
    assert log[1]["epsilon_spent"] == 0.0 and log[0]["epsilon_spent"] == 0.5
    assert log[0]["key"] == "marketing team"
    assert log[0]["filters"] == {"category": ["DIFF"]}
    assert odd_sid not in json.dumps(log)


def test_budget_same_day_answers_and_the_audit(
    redis_url: str, tmp_path: Path, client: FlaskClient
) -> None:
    small = create_app(
        make_config(
            redis_url,
            tmp_path / "b",
            AUDIENCE_INDEXER=False,
            AUDIENCE_MONTHLY_BUDGET=1.0,
            RATE_LIMITS=False,
            AUDIENCE_K=K,
        )
    )
    try:
        c = small.test_client()
        auth, admin, _ = keys(small)
        people(c, 55, category="A", product="x")
        index(small)
        first = estimate(c, auth, category=["A"]).get_json()
        again = estimate(c, auth, category=["A"]).get_json()
        assert again["estimate"] == first["estimate"] and again["range"] == first["range"]
        assert again["epsilon_spent"] == 0.0 and again["budget_left"] == 0.5
        assert estimate(c, auth, category=["A"], active_within_days=90).status_code == 200
        resp = estimate(c, auth, category=["A"], active_within_days=30)
        assert resp.status_code == 429
        assert resp.get_json()["error"]["code"] == "budget_exhausted"
        assert int(resp.headers["Retry-After"]) > 0
        # the same question again still answers (remembered, free) with the budget spent
        assert estimate(c, auth, category=["A"]).get_json()["estimate"] == first["estimate"]
        log = c.get("/v1/audiences/queries", headers=admin).get_json()["queries"]
        assert [q["outcome"] for q in log] == ["answered"] * 3 + ["budget_exhausted", "answered"]
        assert sum(q["epsilon_spent"] for q in log) == 1.0
        assert c.get("/v1/audiences/queries", headers=auth).status_code == 401
    finally:
        for close in small.extensions["gateway"].closers:
            close()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"filters": {"colour": ["red"]}}, "colour"),
        ({"filters": {"province": ["Atlantis"]}}, "province"),
        ({"filters": {"company_size": ["250"]}}, "company_size"),
        ({"filters": {"active_within_days": 12}}, "active_within_days"),
        ({"filters": {"category": []}}, "category"),
        ({"filters": {}, "subject": "x"}, "subject"),
    ],
)
def test_unknown_dimensions_and_values_are_refused_naming_them(
    app: Flask, client: FlaskClient, body: Any, named: str
) -> None:
    auth, _, _ = keys(app)
    resp = client.post("/v1/audiences/estimate", json=body, headers=auth)
    assert resp.status_code == 400
    assert named in resp.get_json()["error"]["fields"]


def test_a_key_without_the_scope_is_refused(app: Flask, client: FlaskClient) -> None:
    _, admin, accounts = keys(app)
    for headers in ({}, admin, accounts, {"Authorization": "Bearer " + uuid.uuid4().hex}):
        resp = client.post("/v1/audiences/estimate", json={"filters": {}}, headers=headers)
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == "invalid_api_key"


def test_a_breakdown_lists_trait_values_and_suppresses_small_cells(
    app: Flask, client: FlaskClient
) -> None:
    auth, _, accounts = keys(app)
    ids = people(client, 60, category="BRK")
    for i, (sid, _) in enumerate(ids):
        client.post(f"/v1/accounts/b-{i}/subjects", json={"subject": sid}, headers=accounts)
        province = "广东" if i < 52 else "浙江"
        client.put(f"/v1/accounts/b-{i}/traits", json={"province": province}, headers=accounts)
    index(app)
    resp = client.post(
        "/v1/audiences/breakdown",
        json={"by": "province", "filters": {"category": ["BRK"]}},
        headers=auth,
    )
    assert resp.status_code == 200, resp.get_json()
    got = resp.get_json()
    cells = {c["value"]: c for c in got["cells"]}
    assert len(cells) == 34  # every province, small ones suppressed, none shown as zero
    assert cells["广东省"]["below_threshold"] is False and cells["广东省"]["estimate"] >= K
    assert cells["浙江省"] == {
        "value": "浙江省",
        "estimate": None,
        "range": None,
        "below_threshold": True,
    }
    assert got["epsilon_spent"] == 1.0


@pytest.mark.parametrize(
    ("setting", "value"),
    [("k", 49), ("epsilon", 0.0), ("epsilon", 11.0), ("breakdown_epsilon", -1.0), ("recent", 0)],
)
def test_the_privacy_floor_cannot_be_configured_away(setting: str, value: float) -> None:
    from gateway.core.audiences.service import Settings
    from gateway.core.errors import ConfigError

    with pytest.raises(ConfigError, match=setting.upper() if setting != "k" else "AUDIENCE_K"):
        Settings(**{setting: value})


def test_province_and_city_come_from_the_visits_geoip(app: Flask, client: FlaskClient) -> None:
    auth, _, _ = keys(app)
    for address, n in (("202.96.134.133", 3), ("114.114.114.114", 2)):  # 广州 广东, 南京 江苏省
        client.environ_base["REMOTE_ADDR"] = address
        people(client, n, category="GEO")
    index(app)
    assert true_count(app, province=["广东"]) == 3  # the short name GeoIP gives, normalised
    assert true_count(app, province=["江苏省"], city=["南京"]) == 2
    assert true_count(app, city=["广州", "南京"], category=["GEO"]) == 5
    resp = client.post("/v1/audiences/breakdown", json={"by": "city"}, headers=auth)
    assert resp.status_code == 200
    assert resp.get_json()["cells"] == []  # cities under the floor are not even listed
    assert resp.get_json()["epsilon_spent"] == 0.0


def test_two_queries_sent_together_cannot_both_pass_the_difference_check(
    app: Flask, client: FlaskClient
) -> None:
    """Q1 and Q1 narrowed by one person, sent at once: a key's queries run one at a time,
    so the second sees the first in the key's recent queries and is refused."""
    import threading

    auth, _, accounts = keys(app)
    ids = people(client, 56, category="RACE")
    for i, (sid, _) in enumerate(ids):
        client.post(f"/v1/accounts/r-{i}/subjects", json={"subject": sid}, headers=accounts)
        size = "1-19" if i == 0 else "20-99"
        client.put(f"/v1/accounts/r-{i}/traits", json={"company_size": size}, headers=accounts)
    index(app)
    bodies = [{"category": ["RACE"]}, {"category": ["RACE"], "company_size": ["20-99"]}]
    statuses: list[int] = []
    start = threading.Barrier(2)

    def ask(filters: dict[str, Any]) -> None:
        c = app.test_client()
        start.wait()
        statuses.append(estimate(c, auth, **filters).status_code)

    threads = [threading.Thread(target=ask, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 400]


def test_a_huge_refused_query_keeps_the_audit_readable(app: Flask, client: FlaskClient) -> None:
    auth, admin, _ = keys(app)
    values = ["x" * 140 + str(i) for i in range(50)]  # 50 unknown values of 141 characters
    resp = client.post(
        "/v1/audiences/estimate",
        json={"filters": {"province": values, "city": values}},
        headers=auth,
    )
    assert resp.status_code == 400
    log = client.get("/v1/audiences/queries", headers=admin)
    assert log.status_code == 200
    (entry,) = log.get_json()["queries"]
    assert entry["outcome"] == "validation_failed" and "truncated" in entry["filters"]


def test_a_query_whose_lock_lapsed_neither_spends_twice_nor_replaces_the_answer(
    app: Flask,
) -> None:
    """The two scripts a query runs (``begin_query``, ``finish_query``) when its lock lapsed
    under it (a worker stalled past ``LOCK_MS``): the twin that took the lock over keeps its
    lock, its answer and its spending; the late one spends nothing and writes nothing."""
    import time

    store = svc(app).store.audiences
    q, month = "2026-12-02|estimate|{}", "2026-12"
    late = store.begin_query("key1", q, month, "late", 50, index=True)
    assert late is not None and late.answers == {} and late.spent == 0.0
    assert late.index == store.generations()  # read in the same round trip
    assert store.begin_query("key1", q, month, "other", 50, index=False) is None  # held
    time.sleep(0.1)  # the late query's lock lapses
    twin = store.begin_query("key1", q, month, "twin", 30_000, index=False)
    assert twin is not None and twin.index is None
    base = {"question": q, "month": month, "budget": 1.0, "answer_ttl_s": 60, "counts": "500"}
    done = store.finish_query(
        "key1",
        QueryEnd(**base, token="twin", epsilon=0.5, answer='{"estimate":500}', audit='"t"'),
    )
    assert (done.outcome, done.spent) == ("ok", 0.5)
    held = store.begin_query("key1", q, month, "third", 30_000, index=False)
    assert held is not None and held.answers == {"500": '{"estimate":500}'} and held.spent == 0.5
    # the late one ends while "third" holds the lock: its answer is refused, third's lock stays
    end = store.finish_query(
        "key1",
        QueryEnd(**base, token="late", epsilon=0.5, answer='{"estimate":510}', audit='"l"'),
    )
    assert (end.outcome, end.answer, end.spent) == ("twin", '{"estimate":500}', 0.5)
    assert store.begin_query("key1", q, month, "fourth", 30_000, index=False) is None
    assert store.audit_since(0, 10) == ['"t"']
    # not enough budget left: nothing spent, kept, remembered or audited, the lock released
    short = store.finish_query(
        "key1",
        QueryEnd(
            **{**base, "counts": "900"},
            token="third",
            epsilon=0.6,
            answer='{"estimate":900}',
            recent=RecentQuery('{"x":1}', 900, keep=20, ttl_s=60),
            audit='"s"',
        ),
    )
    assert (short.outcome, short.spent) == ("budget", 0.5)
    after = store.begin_query("key1", q, month, "fifth", 30_000, index=False)
    assert after is not None and after.answers == {"500": '{"estimate":500}'}
    assert after.recent == [] and after.spent == 0.5
    assert store.audit_since(0, 10) == ['"t"']


def test_a_query_answers_after_the_store_forgot_its_scripts(
    app: Flask, client: FlaskClient
) -> None:
    """The lock and the index's state go out pipelined by their SHA alone (no SCRIPT EXISTS
    first): after a restart forgot them (SCRIPT FLUSH here), they are loaded and sent
    again."""
    auth, admin, _ = keys(app)
    assert estimate(client, auth, category=["NONE"]).status_code == 200
    svc(app).store.audiences.r.script_flush()
    resp = estimate(client, auth, category=["NONE"], active_within_days=7)
    assert resp.status_code == 200 and resp.get_json()["below_threshold"] is True
    assert estimate(client, auth, category=["NONE"], active_within_days=30).status_code == 200
    log = client.get("/v1/audiences/queries", headers=admin).get_json()["queries"]
    assert [q["outcome"] for q in log] == ["answered"] * 3
