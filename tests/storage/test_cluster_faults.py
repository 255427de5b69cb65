"""Faults only a cluster has, through the gateway: a replica that does not confirm, a planned
failover (the old master answers MOVED), a whole cluster gone, a cluster away at start.

Each test starts a 3-master Valkey cluster of its own (``clusters``): one replica each.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.core.errors import StorageUnavailable
from gateway.core.tokens import VID_COOKIE

from ..cluster import Cluster
from ..conftest import Gateways
from ..helpers import CURRENT, K, grant, page_view

pytestmark = pytest.mark.slow


def _sid(client: FlaskClient) -> str:
    return client.get_cookie(VID_COOKIE).value.split(".")[0]  # type: ignore[union-attr]


def _consent(client: FlaskClient, **purposes: bool) -> int:
    body = {"policy_version": CURRENT, "purposes": purposes}
    return client.post("/v1/consent", json=body).status_code


@pytest.fixture
def cluster(clusters: Callable[..., Cluster]) -> Cluster:
    return clusters(masters=3, replicas=1)


@pytest.fixture
def app(cluster: Cluster, gateways: Gateways) -> Flask:
    return gateways(cluster.url, RATE_LIMITS=False)


def test_a_consent_no_replica_confirms_is_a_503_and_events_go_on(
    cluster: Cluster, app: Flask
) -> None:
    """The replica of the subject's master frozen: WAIT 1 times out, so no 201 (the write is
    on the master but not where a failover would find it); the events path does not wait."""
    client = app.test_client()
    grant(client, personalization=True)
    replica = cluster.replica_of(cluster.master_of(K.consent(_sid(client))))
    cluster.kill(replica, signal.SIGSTOP)
    try:
        assert _consent(client, personalization=True, advertising=True) == 503
        assert client.post("/v1/events", json=page_view()).status_code == 202
    finally:
        cluster.resume(replica)
    assert _consent(client, personalization=True, advertising=True) == 201
    history = client.get("/v1/consent/history").get_json()
    assert history["chain"]["intact"] is True


def test_a_planned_failover_is_followed_by_the_next_write(cluster: Cluster, app: Flask) -> None:
    """After CLUSTER FAILOVER the subject's slot is served by the new master: the next write
    reaches it (the slot map refreshed by the read before it, or by the write's own MOVED),
    and nothing is lost or written twice."""
    client = app.test_client()
    grant(client, personalization=True)
    sid = _sid(client)
    cluster.failover(cluster.master_of(K.consent(sid)))
    assert _consent(client, personalization=True, advertising=True) == 201
    assert client.post("/v1/events", json=page_view()).status_code == 202
    history = client.get("/v1/consent/history").get_json()
    assert history["length"] == 2 and history["chain"]["intact"] is True


def test_a_cluster_that_is_gone_is_a_503_everywhere(cluster: Cluster, app: Flask) -> None:
    client = app.test_client()
    grant(client, personalization=True)
    for node in cluster.nodes:
        cluster.kill(node)
    pixel = "/p.gif?url=https%3A%2F%2Fshop.example.com%2F"
    answers = {
        "consent": _consent(client, personalization=True),
        "events": client.post("/v1/events", json=page_view()).status_code,
        "pixel": client.get(pixel).status_code,
        "history": client.get("/v1/consent/history").status_code,
        "subject": client.get("/v1/subject").status_code,
        "health": client.get("/healthz").status_code,
    }
    assert set(answers.values()) == {503}, answers


def test_a_cluster_away_at_start_is_named_not_guessed(cluster: Cluster, gateways: Gateways) -> None:
    url = cluster.url
    for node in cluster.nodes:
        cluster.kill(node)
    with pytest.raises(StorageUnavailable, match="does not answer"):
        gateways(url, REDIS_CLUSTER="yes")
