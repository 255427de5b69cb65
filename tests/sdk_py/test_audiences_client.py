"""sdk_py's AudiencesClient against the real gateway over HTTP: typed estimates and
breakdowns, the floor, the refusals as their own errors (a spent budget with its Retry-After,
a query too close to an earlier one), the audit log and the keys' scopes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask

from gateway.app import create_app
from sdk_py import (
    AudiencesClient,
    Breakdown,
    BudgetExhausted,
    Cell,
    Estimate,
    GatewayRefused,
    TooCloseToEarlierQuery,
)

from ..conftest import Gateways, LiveServer, make_config
from ..helpers import app_subject, event

K = 50  # the lowest floor the gateway takes: the smallest populations that show it
AUDIENCES = {"AUDIENCE_INDEXER": False, "RATE_LIMITS": False, "AUDIENCE_K": K}


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    """A gateway with the lowest floor, whose audience index is built when a test says."""
    application = create_app(make_config(redis_url, tmp_path, **AUDIENCES))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


def people(app: Flask, n: int, category: str) -> None:
    """``n`` APP subjects consenting to advertising, each having searched in ``category``;
    then the index built, so that the next query counts them. Made 16 at a time: each consent
    waits for the store's fsync, which concurrent writes share."""

    def one(_i: int) -> None:
        client = app.test_client()
        _, token = app_subject(client, personalization=True, advertising=True)
        body = {"events": [event("search", keyword="螺丝", category=category)]}
        resp = client.post("/v1/batch", json=body, headers={"X-Subject": token})
        assert resp.status_code == 202 and resp.get_json()["stored"] == 1, resp.get_json()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))
    app.extensions["gateway"].indexer.run_until_idle()


def key(app: Flask, scope: str, name: str = "marketing team") -> str:
    return str(app.extensions["gateway"].apikeys.create(name, [scope]))


def test_an_estimate_is_typed_its_range_holds_the_count_and_few_people_get_no_number(
    app: Flask, url: str
) -> None:
    people(app, 55, "BOLT")
    people(app, 3, "RARE")
    with AudiencesClient(url, key(app, "audiences")) as audiences:
        got = audiences.estimate({"category": ["BOLT"], "active_within_days": 7})
        assert isinstance(got, Estimate) and got.below_threshold is False
        assert got.estimate is not None and got.estimate >= K
        assert got.range is not None and isinstance(got.range, tuple)
        lo, hi = got.range
        assert K <= lo <= got.estimate <= hi
        assert (got.epsilon_spent, got.budget_left) == (0.5, 9.5)
        assert audiences.estimate({"category": ("BOLT",), "active_within_days": 7}) == Estimate(
            got.estimate, got.range, False, 0.0, 9.5
        )  # the same question the same day: the same answer, free
        # The range holds the true count 95 % sure (98.7 % here, with the rounding's slack):
        # of three releases of the same 55 (everyone was active today), two at least hold it.
        ranges = [got.range] + [
            audiences.estimate({"category": ["BOLT"], "active_within_days": days}).range
            for days in (30, 90)
        ]
        assert sum(r is not None and r[0] <= 55 <= r[1] for r in ranges) >= 2, ranges
        assert audiences.estimate({"category": "RARE"}) == Estimate(None, None, True, 0.0, 8.5)
        with pytest.raises(GatewayRefused) as bad:
            audiences.estimate({"colour": ["red"], "active_within_days": 12})
        assert type(bad.value) is GatewayRefused and bad.value.status == 400
        assert bad.value.code == "validation_failed"
        assert set(bad.value.fields) == {"colour", "active_within_days"}


def test_a_breakdown_is_typed_and_lists_every_value_of_a_trait(app: Flask, url: str) -> None:
    people(app, 55, "BOLT")
    people(app, 3, "NUT")
    with AudiencesClient(url, key(app, "audiences")) as audiences:
        got = audiences.breakdown("category", {"category": ["BOLT"]})
        assert isinstance(got, Breakdown) and got.by == "category"
        [bolt] = got.cells  # NUT: no one of the query's people, so not listed
        assert isinstance(bolt, Cell) and bolt.value == "BOLT" and not bolt.below_threshold
        assert bolt.estimate is not None and bolt.estimate >= K
        assert bolt.range is not None and K <= bolt.range[0] <= bolt.estimate <= bolt.range[1]
        assert (got.epsilon_spent, got.budget_left) == (1.0, 9.0)
        sizes = audiences.breakdown("company_size", {"category": ["BOLT"]})
        assert len(sizes.cells) > 1  # a trait's values are all listed, small ones unnumbered
        assert all(c == Cell(c.value, None, None, True) for c in sizes.cells)
        assert sizes.cell("20-99") == Cell("20-99", None, None, True)
        assert sizes.cell("no such size") is None
        assert (sizes.epsilon_spent, sizes.budget_left) == (0.0, 9.0)
        with pytest.raises(GatewayRefused) as bad:
            audiences.breakdown("colour")
        assert bad.value.status == 400 and "by" in bad.value.fields


def test_a_query_too_close_to_an_earlier_one_is_refused_and_the_audit_shows_it(
    app: Flask, url: str
) -> None:
    people(app, 55, "BOLT")
    people(app, 3, "NUT")
    admin_key = key(app, "audiences_admin", "privacy office")
    with AudiencesClient(url, key(app, "audiences")) as audiences:
        assert audiences.estimate({"category": ["BOLT"]}).below_threshold is False
        with pytest.raises(TooCloseToEarlierQuery) as close:  # three people more: singled out
            audiences.estimate({"category": ["BOLT", "NUT"]})
        assert close.value.status == 400 and close.value.code == "too_close_to_earlier_query"
        assert close.value.fields["earlier_filters"] == {"category": ["BOLT"]}
        with pytest.raises(GatewayRefused) as wrong_scope:
            audiences.queries()
        assert wrong_scope.value.status == 401
    with AudiencesClient(url, admin_key) as admin:
        log = admin.queries()
        assert [q["outcome"] for q in log] == ["answered", "too_close_to_earlier_query"]
        assert [q["epsilon_spent"] for q in log] == [0.5, 0.0]
        assert log[0]["key"] == "marketing team" and log[0]["kind"] == "estimate"
        assert log[0]["filters"] == {"category": ["BOLT"]}
        assert log[0]["answer"]["below_threshold"] is False
        assert admin.queries(limit=1) == log[:1]
        assert admin.queries(since_ms=int(time.time() * 1000) + 60_000) == []
        with pytest.raises(GatewayRefused) as bad_limit:
            admin.queries(limit=0)
        assert bad_limit.value.status == 400
        with pytest.raises(GatewayRefused) as not_marketing:
            admin.estimate()
        assert not_marketing.value.status == 401


def test_a_spent_budget_says_when_it_renews(
    redis_url: str, gateways: Gateways, serve: Callable[[Flask], LiveServer]
) -> None:
    small = gateways(redis_url, AUDIENCE_MONTHLY_BUDGET=1.0, AUDIENCE_EPSILON=0.5, **AUDIENCES)
    people(small, 55, "BOLT")
    url = f"http://127.0.0.1:{serve(small).port}"
    with AudiencesClient(url, key(small, "audiences")) as audiences:
        first = audiences.estimate({"category": ["BOLT"]})
        assert audiences.estimate({"category": ["BOLT"], "active_within_days": 90}).budget_left == 0
        with pytest.raises(BudgetExhausted) as spent:
            audiences.estimate({"category": ["BOLT"], "active_within_days": 30})
        assert spent.value.status == 429 and spent.value.code == "budget_exhausted"
        assert spent.value.retry_after is not None and 0 < spent.value.retry_after <= 31 * 86_400
        assert spent.value.fields["budget_left"] == 0.0
        again = audiences.estimate({"category": ["BOLT"]})  # asked before: still answered, free
        assert (again.estimate, again.epsilon_spent) == (first.estimate, 0.0)


def test_an_unknown_key_is_refused(app: Flask, url: str) -> None:
    with AudiencesClient(url, "gwk_wrong") as audiences, pytest.raises(GatewayRefused) as no:
        audiences.estimate()
    assert no.value.status == 401 and no.value.code == "invalid_api_key"
